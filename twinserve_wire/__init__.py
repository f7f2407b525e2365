"""twinserve's wire contract, shared by the daemon and the client library.

The generated protobuf modules (`proto.v1`, from proto/ by scripts/gen_proto.py), the gRPC
service's method paths (`service`), and the table from HTTP statuses to gRPC codes that
makes one error read the same on both transports (`codes`). It depends on grpcio and
protobuf only, so `clients` installs and imports without the daemon, and neither package
reaches into the other.
"""
