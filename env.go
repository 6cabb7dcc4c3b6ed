package spear

// The environment variables through which a runtime hands an instance what
// it needs to connect back (docs/protocol.md, "Bootstrap").
const (
	// EnvInstanceID holds the instance's full id, "[namespace:]runtime:name".
	EnvInstanceID = "SPEAR_INSTANCE_ID"
	// EnvSecret holds the per-instance secret, hex-encoded.
	EnvSecret = "SPEAR_SECRET"
	// EnvSecretFile, instead of EnvSecret, names a file holding the
	// hex-encoded secret (as a mounted Kubernetes Secret does).
	EnvSecretFile = "SPEAR_SECRET_FILE"
	// EnvChannel holds the channel type: unix, tcp, grpc or memory.
	EnvChannel = "SPEAR_CHANNEL"
	// EnvAddress holds the address to dial: a socket path, host:port, or a
	// memory address.
	EnvAddress = "SPEAR_ADDRESS"
)
