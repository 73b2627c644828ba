"""Ray Serve multi-LoRA endpoints: OpenAI-compatible ingress in front of a vLLM or HF/peft engine deployment."""
