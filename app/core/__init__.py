"""Pure math on tensors/arrays: no Ray, no files, no network. Every function here is golden-tested."""
