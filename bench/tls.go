package bench

import (
	"context"
	"os"
	"path/filepath"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/chantls"
	"github.com/spear-go/spear/internal/statedir"
)

// The cost of TLS on a network channel: a tcp round trip over TLS (the
// agent's generated certificate, pinned by the instance) against the same
// round trip in plaintext, both through Spear. They are reported after
// the others.
func init() {
	comparisons = append(comparisons,
		comparison{name: "tcptls64", setup: func(ctx context.Context) (*pair, error) { return tlsPair(ctx, 64, chantls.Server) }},
		comparison{name: "tcptls64k", setup: func(ctx context.Context) (*pair, error) { return tlsPair(ctx, 64<<10, chantls.Server) }},
		comparison{name: "tcpmtls64", setup: func(ctx context.Context) (*pair, error) { return tlsPair(ctx, 64, chantls.Mutual) }},
	)
}

// tlsPair compares a tcp channel round trip of size bytes over TLS in
// mode with one in plaintext.
func tlsPair(ctx context.Context, size int, mode chantls.Mode) (*pair, error) {
	dir, err := os.MkdirTemp("", "spear-bench-tls-")
	if err != nil {
		return nil, err
	}
	state, err := statedir.Open(filepath.Join(dir, "state"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	agent, err := chantls.Load(state, chantls.Config{Mode: mode})
	state.Close()
	os.RemoveAll(dir) // the certificate is in memory now
	if err != nil {
		return nil, err
	}
	secure, err := newEchoChannelWith(ctx, channel.Options{TLS: agent}, spear.Process, channel.TCP)
	if err != nil {
		return nil, err
	}
	plain, err := newEchoChannel(ctx, spear.Process, channel.TCP)
	if err != nil {
		secure.close()
		return nil, err
	}
	return &pair{
		ours:  serial(secure.execute(size)),
		base:  serial(plain.execute(size)),
		close: func() { secure.close(); plain.close() },
	}, nil
}
