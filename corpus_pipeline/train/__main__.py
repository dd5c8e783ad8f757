"""``python -m corpus_pipeline.train`` (see the package docstring)."""

from corpus_pipeline.train import main

raise SystemExit(main())
