package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestSameAddress(t *testing.T) {
	v4 := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	any4 := &net.TCPAddr{IP: net.IPv4zero, Port: 8080}
	any6 := &net.TCPAddr{IP: net.IPv6unspecified, Port: 8080}
	v6 := &net.TCPAddr{IP: net.IPv6loopback, Port: 8080}
	tests := []struct {
		got  net.Addr
		want string
		same bool
	}{
		{v4, "127.0.0.1:8080", true},
		{v4, "localhost:8080", true},
		{v4, "127.0.0.1:8081", false},
		{v4, "127.0.0.2:8080", false},
		{v4, ":8080", false}, // the key asks for every address
		{any4, ":8080", true},
		{any4, "0.0.0.0:8080", true},
		{any6, ":8080", true}, // ListenStream=8080 binds [::]
		{any6, "0.0.0.0:8080", true},
		{any6, "[::]:8080", true},
		{any4, "127.0.0.1:8080", false},
		{v6, "[::1]:8080", true},
		{v6, "127.0.0.1:8080", false},
		{v4, "8080", false}, // not host:port
		{&net.UnixAddr{Name: "/run/x.sock", Net: "unix"}, "127.0.0.1:8080", false},
	}
	for _, tt := range tests {
		if got := sameAddress(tt.got, tt.want); got != tt.same {
			t.Errorf("sameAddress(%v, %q) = %v, want %v", tt.got, tt.want, got, tt.same)
		}
	}
}

func TestPassedSocketsListen(t *testing.T) {
	a, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &passedSockets{lns: []net.Listener{a, b}, used: make([]bool, 2)}

	got, err := s.listen("tcp", a.Addr().String())
	if err != nil || got != a {
		t.Fatalf("listen(%s) = %v, %v; want the passed socket", a.Addr(), got, err)
	}
	// An address no socket was passed for gets a listener of its own.
	own, err := s.listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	if own == a || own == b {
		t.Fatal("listen(127.0.0.1:0) returned a passed socket")
	}
	// b was passed but named by no key: unused closes it and names it.
	err = s.unused()
	if err == nil || !strings.Contains(err.Error(), b.Addr().String()) {
		t.Fatalf("unused() = %v, want an error naming %s", err, b.Addr())
	}
	if c, err := net.Dial("tcp", b.Addr().String()); err == nil {
		c.Close()
		t.Fatalf("the unused socket %s still accepts connections", b.Addr())
	}
	if err := s.unused(); err != nil {
		t.Fatalf("unused() again = %v, want nil", err)
	}
	a.Close()
}

// TestSystemdSockets passes a listening socket to a child process the way
// systemd does (descriptor 3, LISTEN_FDS, LISTEN_PID set to the child's
// own pid by the shell it execs from), and the child serves a connection
// made before it started on it.
func TestSystemdSockets(t *testing.T) {
	if os.Getenv("MAILGATE_TEST_SOCKETS_CHILD") == "1" {
		systemdSocketsChild()
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A client connects before the child runs: the connection waits in
	// the socket's backlog.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`, os.Args[0], "-test.run", "^TestSystemdSockets$")
	cmd.Env = append(os.Environ(), "MAILGATE_TEST_SOCKETS_CHILD=1", "LISTEN_FDS=1", "SOCKET_ADDR="+ln.Addr().String())
	cmd.ExtraFiles = []*os.File{f}
	var output strings.Builder
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The connection is closed when the child exits, so that a child
	// that fails cannot leave the read waiting.
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		c.Close()
		exited <- err
	}()
	buf := make([]byte, 64)
	n, err := io.ReadFull(c, buf[:len("served by the child\n")])
	werr := <-exited
	if err != nil || string(buf[:n]) != "served by the child\n" || werr != nil {
		t.Fatalf("read from the passed socket: %q, %v; child: %v, output %q", buf[:n], err, werr, output.String())
	}
}

// systemdSocketsChild is the child of TestSystemdSockets: it takes the
// passed socket for SOCKET_ADDR and answers the waiting connection.
func systemdSocketsChild() {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	s, err := systemdSockets()
	if err != nil {
		fail(err)
	}
	if len(s.lns) != 1 {
		fail(fmt.Errorf("got %d sockets, want 1", len(s.lns)))
	}
	if os.Getenv("LISTEN_FDS") != "" {
		fail(fmt.Errorf("LISTEN_FDS is still set"))
	}
	ln, err := s.listen("tcp", os.Getenv("SOCKET_ADDR"))
	if err != nil {
		fail(err)
	}
	if ln != s.lns[0] {
		fail(fmt.Errorf("listen(%s) did not return the passed socket", os.Getenv("SOCKET_ADDR")))
	}
	if err := s.unused(); err != nil {
		fail(err)
	}
	c, err := ln.Accept()
	if err != nil {
		fail(err)
	}
	fmt.Fprint(c, "served by the child\n")
	c.Close()
	os.Exit(0)
}
