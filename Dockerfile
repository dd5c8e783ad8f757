# Custom worker container for Dataflow (or any portable runner): the Beam Python SDK image with
# corpus-pipeline, its bundled vocabularies and punkt parameters baked in.
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/corpus-pipeline:0.1.0 .
#   docker push REGION-docker.pkg.dev/PROJECT/REPO/corpus-pipeline:0.1.0
#   corpus-pipeline run ... --runner DataflowRunner \
#       --sdk_container_image REGION-docker.pkg.dev/PROJECT/REPO/corpus-pipeline:0.1.0
# Keep the Beam version equal to the launcher's (`pip show apache-beam`).
ARG BEAM_VERSION=2.77.0
FROM apache/beam_python3.11_sdk:${BEAM_VERSION}

WORKDIR /opt/corpus-pipeline
COPY pyproject.toml README.md ./
COPY corpus_pipeline ./corpus_pipeline
COPY pipelines ./pipelines
COPY vocab ./vocab
# The vocab link inside the package resolves to ./vocab; install a real copy.
RUN rm -f corpus_pipeline/data/vocab && cp -r vocab corpus_pipeline/data/vocab \
    && pip install --no-cache-dir . \
    && python -c "from corpus_pipeline.stages.sentences import get_tokenizer; get_tokenizer('english')"
