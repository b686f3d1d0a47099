"""Training: datasets, codebook building, SFT and GRPO on top of TRL."""
