"""rayalign: a Ray-native platform that turns a base model and a dataset into an aligned, evaluated, served LoRA adapter."""

__version__ = "0.1.0"
