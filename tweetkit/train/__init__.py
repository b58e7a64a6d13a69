"""The one training core that pretrain and finetune share (see loop.train)."""
