"""gRPC against REST: images/s of the Open Inference Protocol over gRPC, REST v2 and /score."""
