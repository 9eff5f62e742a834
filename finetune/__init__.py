"""Domain fine-tuning: training data formats, data from a knowledge base, LoRA/freeze training, merge."""
