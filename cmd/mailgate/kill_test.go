package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets a test re-execute the test binary as a mailgate daemon
// ("mailgate run -c FILE"), so that it can be killed with SIGKILL.
func TestMain(m *testing.M) {
	if path := os.Getenv("MAILGATE_TEST_RUN_CONFIG"); path != "" {
		env := &environment{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
		os.Exit(execute(context.Background(), env, []string{"run", "-c", path}))
	}
	code := m.Run()
	postgres.Stop()
	os.Exit(code)
}

// startChild starts the daemon as a child process.
func (e *testEnv) startChild(logName string) *exec.Cmd {
	e.t.Helper()
	logf, err := os.OpenFile(e.dir+"/"+logName, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		e.t.Fatal(err)
	}
	// A child binds its own listeners: give up the ports held for an
	// in-process daemon. (The port is free for a moment here; handing the
	// sockets over, as systemd socket activation does, would close that.)
	e.releasePorts()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "MAILGATE_TEST_RUN_CONFIG="+e.cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	return cmd
}

func TestDaemonSurvivesKill9MidBurst(t *testing.T) {
	e := newTestEnv(t, "\n[channel.inbound]\nrate_limit = 1000\n")
	const total = 120
	child := e.startChild("run1.log")
	sent := 0
	deliverSome := func(n int) {
		for range n {
			s := sent % 6
			e.deliver(customerMail(fmt.Sprintf("k%d@example.test", s), "K", fmt.Sprintf("k-%d@example.test", sent), "Kill", fmt.Sprintf("message %d", sent), "In-Reply-To: <x@example.test>"))
			sent++
		}
	}
	deliverSome(total / 2)
	// Kill it while it is working through the burst.
	deadline := time.Now().Add(waitLimit)
	for len(e.ul.received()) < 5 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	killedAt := len(e.ul.received())
	deliverSome(total - total/2)

	child = e.startChild("run2.log")
	e.ul.waitPosts(total)
	time.Sleep(500 * time.Millisecond)
	posts := e.ul.received()
	seen := map[string]int{}
	for _, p := range posts {
		seen[p.Text]++
	}
	dups := len(posts) - len(seen)
	if len(seen) != total {
		t.Errorf("%d distinct messages posted, want %d", len(seen), total)
	}
	// Only a message whose POST was in flight at the kill may be posted
	// twice; with at most 4 concurrent POSTs, at most 4 duplicates.
	if dups > 4 {
		t.Errorf("%d duplicates, want at most 4 (the POSTs in flight at the kill)", dups)
	}
	t.Logf("killed after %d posts; %d posts in all, %d duplicates", killedAt, len(posts), dups)

	// A clean SIGTERM stops the daemon with status 0.
	if err := child.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- child.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the daemon did not stop within 10 s of SIGTERM")
	}
	logs, _ := os.ReadFile(e.dir + "/run2.log")
	if strings.Contains(string(logs), supportPass) || strings.Contains(string(logs), inboundToken) {
		t.Error("a secret appears in the daemon log")
	}
}

func TestDaemonSIGTERMDuringBurstLosesNothing(t *testing.T) {
	e := newTestEnv(t, "\n[channel.inbound]\nrate_limit = 1000\n")
	const total = 80
	for i := range total {
		e.deliver(customerMail(fmt.Sprintf("t%d@example.test", i%4), "T", fmt.Sprintf("t-%d@example.test", i), "Term", fmt.Sprintf("message %d", i), "In-Reply-To: <x@example.test>"))
	}
	child := e.startChild("term1.log")
	deadline := time.Now().Add(waitLimit)
	for len(e.ul.received()) < 3 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	child.Process.Signal(syscall.SIGTERM)
	if err := child.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	e.startChild("term2.log")
	e.ul.waitPosts(total)
	time.Sleep(300 * time.Millisecond)
	posts := e.ul.received()
	seen := map[string]bool{}
	for _, p := range posts {
		if seen[p.Text] {
			t.Errorf("posted twice after a clean stop: %q", p.Text)
		}
		seen[p.Text] = true
	}
	if len(seen) != total {
		t.Errorf("%d distinct posts, want %d", len(seen), total)
	}
}
