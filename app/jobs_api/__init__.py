"""Fine-tuning job API: state machine, job store, Ray job runner, FastAPI app on Ray Serve."""
