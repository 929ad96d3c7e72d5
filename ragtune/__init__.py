"""ragtune: adapt the retrieval models of a RAG system to your own domain, reproducibly."""

__version__ = "0.1.0"
