"""Whole-pipeline Beam graphs: dumps and books in, pretraining shards out."""
