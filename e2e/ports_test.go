//go:build e2e

package e2e

import (
	"net"
	"testing"
)

// TestStartTakenPort checks the harness's answer to a port that another
// process bound between mailsys.FreePort and mailgate's own bind: the
// first start fails with "address already in use", and Start runs
// mailgate again on new ports.
func TestStartTakenPort(t *testing.T) {
	resetMailbox(t, supportUser)
	ul := newFakeUserlike(t, inboundToken)
	g := newMailgate(t, testDir(t), mailgateOptions{InboundURL: ul.InboundURL()})
	taken := g.metrics
	ln, err := net.Listen("tcp", taken)
	if err != nil {
		t.Fatalf("take %s: %v", taken, err)
	}
	defer ln.Close()
	requireDaemon(t, g.Start())
	if g.metrics == taken {
		t.Errorf("mailgate runs with the taken metrics port %s", taken)
	}
	if g.starts != 2 {
		t.Errorf("%d starts, want 2 (the first on the taken port)", g.starts)
	}
}
