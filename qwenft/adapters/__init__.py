"""Which parameters train: LoRA or full fine-tuning, and the trainable-rows policy for new tokens."""
