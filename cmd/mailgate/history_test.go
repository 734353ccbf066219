package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDaemonLeavesHistoryUnposted: a mailbox with mail in it, a new store
// and start = "now" (the default): nothing old is posted, mail that
// arrives afterwards is, and the history is counted in status and
// /metrics.
func TestDaemonLeavesHistoryUnposted(t *testing.T) {
	e := newTestEnv(t, "")
	cfg := readFile(t, e.cfgPath)
	if !strings.Contains(cfg, "start = \"all\"\n") {
		t.Fatal("the harness config has no start line to replace")
	}
	writeFile(t, e.cfgPath, strings.Replace(cfg, "start = \"all\"\n", "", 1)) // the default
	for i, from := range []string{"old1@example.test", "old2@example.test", "old3@example.test"} {
		e.deliver(customerMail(from, "Old", "old"+string(rune('a'+i))+"@example.test", "Closed long ago", "An old question."))
	}
	e.start()
	deadline := time.Now().Add(waitLimit)
	for {
		code, out, _ := runCLI(t, "", "status", "-c", e.cfgPath)
		if code == 0 && strings.Contains(out, "3 older messages left unposted as history") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed the history:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.deliver(customerMail("new@example.test", "New", "new1@example.test", "A new question", "Hello, a new question."))
	posts := e.ul.waitPosts(1)
	if posts[0].Email != "new@example.test" {
		t.Fatalf("first post = %+v, want the new mail", posts[0])
	}
	// UID order: had the history been posted, it would have come first.
	if got := e.ul.received(); len(got) != 1 {
		t.Errorf("posts = %+v, want only the new mail", got)
	}
	resp, err := http.Get("http://" + e.metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `mailgate_inbound_history_total{channel="support"} 3`) {
		t.Errorf("/metrics lacks the history count:\n%s", grepLines(string(body), "history"))
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
