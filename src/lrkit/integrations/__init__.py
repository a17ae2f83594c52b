"""Adapters for other frameworks (optax, Keras, Lightning, Hugging Face); each needs its extra."""
