"""corpus-pipeline: Wikipedia dumps and books to BERT pretraining shards."""

__version__ = "0.1.0"
