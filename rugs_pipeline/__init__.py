"""rugs_pipeline: the event store for the rugs.fun Socket.IO feed."""
