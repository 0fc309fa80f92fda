//! The node agent's reconcilers: desired kernel state from the model, diffed against the kernel and applied
