"""Training: the LightningModule, its callbacks, exports and the `qwenft train` entry point."""
