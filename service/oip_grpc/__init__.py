"""The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`) and the
`grpc.health.v1` health service, served beside the HTTP API on the same models."""
