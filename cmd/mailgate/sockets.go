package main

import (
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/coreos/go-systemd/v22/activation"
)

// passedSockets are the listening sockets the service manager handed over
// (systemd socket activation, sd_listen_fds(3): LISTEN_PID, LISTEN_FDS).
// Each serves the `listen` key whose address it is bound to, so that the
// socket outlives the process: connections that arrive while mailgate
// restarts wait in its backlog instead of being refused, and a port below
// 1024 needs no capability (contrib/systemd/mailgate.socket).
type passedSockets struct {
	mu   sync.Mutex
	lns  []net.Listener
	used []bool
}

// systemdSockets takes the sockets passed to this process, if any, and
// removes the variables that passed them from the environment.
func systemdSockets() (*passedSockets, error) {
	lns, err := activation.Listeners()
	if err != nil {
		return nil, fmt.Errorf("systemd socket activation: %w", err)
	}
	s := &passedSockets{}
	for i, ln := range lns {
		if ln == nil {
			// activation.Listeners leaves nil where a descriptor is not a
			// listening stream socket.
			for _, l := range lns {
				if l != nil {
					l.Close()
				}
			}
			return nil, fmt.Errorf("systemd socket activation: passed descriptor %d is not a listening stream socket", 3+i)
		}
		s.lns = append(s.lns, ln)
	}
	s.used = make([]bool, len(s.lns))
	return s, nil
}

// listen returns the passed socket bound to addr or, when none is, a new
// listener from net.Listen. It has daemonOptions.Listen's signature.
func (s *passedSockets) listen(network, addr string) (net.Listener, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, ln := range s.lns {
		if s.used[i] || !sameAddress(ln.Addr(), addr) {
			continue
		}
		s.used[i] = true
		return ln, nil
	}
	return net.Listen(network, addr)
}

// addrs returns the addresses of the passed sockets.
func (s *passedSockets) addrs() []string {
	var a []string
	for _, ln := range s.lns {
		a = append(a, ln.Addr().String())
	}
	return a
}

// unused closes the passed sockets that no listen key named and returns an
// error naming them; nil when every one serves.
func (s *passedSockets) unused() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var addrs []string
	for i, ln := range s.lns {
		if !s.used[i] {
			addrs = append(addrs, ln.Addr().String())
			ln.Close()
			s.used[i] = true
		}
	}
	if len(addrs) == 0 {
		return nil
	}
	return fmt.Errorf("systemd passed sockets on %s, but neither [server] listen nor [metrics] listen names that address", strings.Join(addrs, ", "))
}

// sameAddress reports whether a listener bound to got serves the
// configured listen address want ("host:port"): the same port and the
// same IP, where an empty host or an unspecified IP (0.0.0.0, ::) matches
// a socket bound to any unspecified address. A host name is resolved.
func sameAddress(got net.Addr, want string) bool {
	tcp, ok := got.(*net.TCPAddr)
	if !ok {
		return false
	}
	host, port, err := net.SplitHostPort(want)
	if err != nil {
		return false
	}
	w, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(host, port))
	if err != nil || w.Port != tcp.Port {
		return false
	}
	if host == "" || w.IP == nil || w.IP.IsUnspecified() {
		return tcp.IP == nil || tcp.IP.IsUnspecified()
	}
	return w.IP.Equal(tcp.IP)
}
