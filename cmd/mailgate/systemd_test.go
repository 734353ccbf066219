package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// notifySocket is a fake systemd notify socket that records every datagram.
type notifySocket struct {
	path string
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []string
}

func newNotifySocket(t *testing.T) *notifySocket {
	dir, err := os.MkdirTemp("", "mgnotify")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s := &notifySocket{path: path, conn: conn}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, string(buf[:n]))
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *notifySocket) waitFor(t *testing.T, substr string, after int) int {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		s.mu.Lock()
		for i := after; i < len(s.msgs); i++ {
			if strings.Contains(s.msgs[i], substr) {
				s.mu.Unlock()
				return i
			}
		}
		msgs := append([]string(nil), s.msgs...)
		s.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %q after message %d in %q", substr, after, msgs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDaemonSystemdNotifyAndReload(t *testing.T) {
	e := newTestEnv(t, "")
	sock := newNotifySocket(t)
	t.Setenv("NOTIFY_SOCKET", sock.path)
	t.Setenv("WATCHDOG_USEC", "400000") // 0.4 s: pings every 0.2 s
	child := e.startChild("systemd.log")
	ready := sock.waitFor(t, "READY=1", 0)
	sock.waitFor(t, "WATCHDOG=1", ready)

	// The daemon works after READY.
	e.deliver(customerMail("jane@example.test", "Jane", "s1@example.test", "S", "one"))
	e.ul.waitPosts(1)

	// An invalid config is refused on SIGHUP; the old one keeps running.
	good, _ := os.ReadFile(e.cfgPath)
	os.WriteFile(e.cfgPath, append(append([]byte(nil), good...), []byte("\nbogus_key = 1\n")...), 0o600)
	child.Process.Signal(syscall.SIGHUP)
	waitLog(t, filepath.Join(e.dir, "systemd.log"), "reload refused")
	e.deliver(customerMail("jane@example.test", "Jane", "s2@example.test", "S", "two", "In-Reply-To: <s1@example.test>"))
	e.ul.waitPosts(2)

	// A valid change (a channel setting) restarts that channel.
	os.WriteFile(e.cfgPath, []byte(strings.Replace(string(good), `poll_interval = "10s"`, `poll_interval = "20s"`, 1)), 0o600)
	n := sock.waitFor(t, "READY=1", ready+1)
	child.Process.Signal(syscall.SIGHUP)
	waitLog(t, filepath.Join(e.dir, "systemd.log"), "config reloaded")
	sock.waitFor(t, "RELOADING=1", n)
	e.deliver(customerMail("jane@example.test", "Jane", "s3@example.test", "S", "three", "In-Reply-To: <s1@example.test>"))
	e.ul.waitPosts(3)

	child.Process.Signal(syscall.SIGTERM)
	sock.waitFor(t, "STOPPING=1", 0)
	if err := child.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	if got := len(e.ul.received()); got != 3 {
		t.Errorf("%d posts, want 3", got)
	}
}

func waitLog(t *testing.T, path, substr string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), substr) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log %s lacks %q:\n%s", path, substr, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
