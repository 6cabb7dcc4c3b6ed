package spear

// The environment variables through which a runtime hands an instance what
// it needs to connect back (docs/protocol.md, "Bootstrap").
const (
	// EnvInstanceID holds the instance's full id, "[namespace:]runtime:name".
	EnvInstanceID = "SPEAR_INSTANCE_ID"
	// EnvSecretFD names an inherited file descriptor from which the
	// instance reads its hex-encoded secret to EOF, then closes it: how
	// process instances receive it. It is preferred over EnvSecretFile and
	// EnvSecret.
	EnvSecretFD = "SPEAR_SECRET_FD"
	// EnvSecretFile names a file holding the hex-encoded secret (as a
	// mounted Kubernetes Secret does). It is preferred over EnvSecret.
	EnvSecretFile = "SPEAR_SECRET_FILE"
	// EnvSecret holds the per-instance secret, hex-encoded: for wasm
	// guests, whose environment no other process can read, and process
	// instances that opted in (docs/security.md says what that risks).
	EnvSecret = "SPEAR_SECRET"
	// EnvChannel holds the channel type: unix, tcp, grpc or memory.
	EnvChannel = "SPEAR_CHANNEL"
	// EnvAddress holds the address to dial: a socket path, host:port, or a
	// memory address.
	EnvAddress = "SPEAR_ADDRESS"

	// EnvTLSPin, on a network channel (tcp, grpc), holds the hex SHA-256
	// of the agent's TLS certificate (DER): the instance dials with TLS
	// and accepts only that certificate.
	EnvTLSPin = "SPEAR_TLS_PIN"
	// EnvTLSCA, instead of EnvTLSPin, holds PEM CA certificates that the
	// agent's certificate must chain to, for the name in EnvTLSServerName
	// (default the host of EnvAddress).
	EnvTLSCA         = "SPEAR_TLS_CA"
	EnvTLSServerName = "SPEAR_TLS_SERVER_NAME"
	// EnvTLSCert holds the instance's PEM client certificate when the
	// agent asks for mutual TLS; its private key is derived from the
	// instance's secret (docs/protocol.md, "TLS").
	EnvTLSCert = "SPEAR_TLS_CERT"
)
