//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mailgate/oauthtest"
	"mailgate/store"
)

// oauthClientID is the public client mailgate logs in as.
const oauthClientID = "mailgate-e2e"

// oauthLogin runs `mailgate oauth login` for the scenario's channel and
// approves the device code it shows at the suite's authorization server,
// as the support mailbox's owner would.
func (g *mailgate) oauthLogin(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, suite.binary, "oauth", "login", "-c", g.cfgPath, "-channel", "support")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var shown strings.Builder
	code := regexp.MustCompile(`^\s+([^\s:/]{8})$`)
	sc := bufio.NewScanner(out)
	approved := false
	for sc.Scan() {
		shown.WriteString(sc.Text() + "\n")
		if m := code.FindStringSubmatch(sc.Text()); m != nil && !approved {
			if err := suite.auth.ApproveDevice(m[1], supportUser); err != nil {
				t.Fatal(err)
			}
			approved = true
		}
	}
	_, _ = io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil || !approved || !strings.Contains(shown.String(), "is logged in") {
		t.Fatalf("mailgate oauth login: %v (approved %v)\n%s%s", err, approved, shown.String(), stderr.String())
	}
}

// grant reads the channel's OAuth2 grant from the daemon's store, beside
// the running daemon (as `mailgate oauth status` does).
func (g *mailgate) grant(t *testing.T) (*store.OAuthGrant, string) {
	t.Helper()
	db := g.openStore(t)
	defer db.Close()
	return readGrant(t, db)
}

// openStore opens the daemon's store beside the running daemon.
func (g *mailgate) openStore(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(g.dir, "mailgate.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func readGrant(t *testing.T, db *store.DB) (*store.OAuthGrant, string) {
	t.Helper()
	ctx := context.Background()
	gr, err := db.OAuthGrant(ctx, "support")
	if err != nil {
		t.Fatal(err)
	}
	rt, _ := db.OAuthRefreshToken(ctx, "support")
	return gr, rt
}

// scrape returns the status and body of one of mailgate's metrics URLs.
func (g *mailgate) scrape(path string) (int, string) {
	resp, err := http.Get("http://" + g.metrics + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor polls cond every 100 ms until it holds or timeout.
func waitFor(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// kickIMAP ends the support mailbox's IMAP sessions, so that mailgate logs
// in again with a token.
func kickIMAP(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := doveadm(ctx, nil, "kick", supportUser); err != nil && !strings.Contains(out, "no users") {
		t.Fatalf("doveadm kick: %v", err)
	}
}

// TestOAuth2 runs a channel that logs in to Dovecot (IMAP) and Postfix
// (SMTP AUTH through Dovecot's SASL) with OAuth2 bearer tokens only:
// Dovecot's oauth2 passdb introspects them at the suite's authorization
// server, whose access tokens live 20 s and whose refresh tokens rotate on
// every use. A delegated device-code login; mail in and replies out across
// several token expiries and forced IMAP re-logins; a SIGKILL right after
// a refresh token rotation; an administrator revoking the grant (login
// needed in the log, /readyz, the metric and `mailgate status`, nothing
// lost); and a new login, after which what waited goes through.
func TestOAuth2(t *testing.T) {
	if testing.Short() {
		t.Skip("about 2 minutes")
	}
	resetMailbox(t, supportUser)
	resetMailbox(t, "jane@example.test")
	suite.auth.AddClient(oauthtest.Client{ID: oauthClientID})
	ul := newFakeUserlike(t, inboundToken)
	g := newMailgate(t, testDir(t), mailgateOptions{
		InboundURL: ul.InboundURL(),
		RateLimit:  1000, // jane mails every few seconds
		SMTP:       `coalesce = "0s"`,
		OAuth2: fmt.Sprintf("provider = \"generic\"\nmode = \"delegated\"\nclient_id = %q\ntoken_url = %q\ndevice_url = %q\n",
			oauthClientID, suite.auth.TokenURL(), suite.auth.DeviceURL()),
	})
	g.oauthLogin(t)
	requireDaemon(t, g.Start())
	if !g.WaitLog("imap: connected", 30*time.Second) {
		t.Fatalf("no IMAP login; log:\n%s", g.LogTail(40))
	}

	posted := 0
	replied := 0
	round := func(name string) {
		t.Helper()
		posted++
		replied++
		deliver(t, supportUser, email{From: "jane@example.test", FromName: "Jane", Subject: name, Body: "mail " + name}.raw())
		g.sendReply(t, operatorReply{ID: "r-" + name, Contact: "jane@example.test", Operator: "Olivia", Text: "reply " + name})
		if _, ok := ul.WaitAccepted(2*time.Minute, func(p []inboundPost) bool { return len(p) >= posted }); !ok {
			t.Fatalf("%s: %d posts, want %d; log:\n%s", name, len(ul.Accepted()), posted, g.LogTail(40))
		}
		if !waitFor(2*time.Minute, func() bool { return countMessages(t, "jane@example.test", "INBOX") >= replied }) {
			t.Fatalf("%s: %d replies in jane's INBOX, want %d; log:\n%s", name, countMessages(t, "jane@example.test", "INBOX"), replied, g.LogTail(40))
		}
	}

	// Mail in and out for a minute and a half (E2E_OAUTH_SOAK, say "5m",
	// for longer): several access token expiries, each SMTP session and
	// every third IMAP login with the current token.
	soak := 90 * time.Second
	if v := os.Getenv("E2E_OAUTH_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("E2E_OAUTH_SOAK: %v", err)
		}
		soak = d
	}
	issued := suite.auth.Issued()
	start := time.Now()
	for i := 1; time.Since(start) < soak; i++ {
		round(fmt.Sprintf("expiry-%d", i))
		if i%3 == 0 {
			kickIMAP(t)
		}
		time.Sleep(5 * time.Second)
	}
	if n, want := suite.auth.Issued()-issued, int(soak/(20*time.Second)); n < want {
		t.Errorf("%d access tokens issued in %v of 20 s tokens, want at least %d", n, soak, want)
	}
	t.Logf("%d access tokens issued in %v", suite.auth.Issued()-issued, time.Since(start).Round(time.Second))

	// SIGKILL right after a rotation: the daemon is killed as soon as the
	// store holds a new refresh token. It must go on with it.
	before, _ := g.grant(t)
	db := g.openStore(t)
	killed := false
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline) && !killed; {
		kickIMAP(t) // a new login asks for a token; one of them refreshes
		for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			if gr, _ := readGrant(t, db); gr.UpdatedAt.After(before.UpdatedAt) && gr.LastRefresh.After(before.LastRefresh) {
				g.Kill9()
				killed = true
				break
			}
		}
	}
	db.Close()
	if !killed {
		t.Fatalf("no refresh within a minute; log:\n%s", g.LogTail(40))
	}
	requireDaemon(t, g.Start())
	round("after-kill9")
	if gr, _ := g.grant(t); gr.LoginNeeded {
		t.Fatalf("login needed after SIGKILL: %+v", gr)
	}

	// An administrator revokes the grant: login needed, loudly.
	_, rt := g.grant(t)
	suite.auth.Revoke(rt)
	kickIMAP(t)
	if !waitFor(2*time.Minute, func() bool {
		code, body := g.scrape("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "OAuth2 login needed (invalid_grant")
	}) {
		code, body := g.scrape("/readyz")
		t.Fatalf("/readyz %d %s; log:\n%s", code, body, g.LogTail(40))
	}
	if _, body := g.scrape("/metrics"); !strings.Contains(body, `mailgate_oauth_login_needed{channel="support"} 1`) {
		t.Errorf("metric mailgate_oauth_login_needed not 1")
	}
	out, err := exec.Command(suite.binary, "status", "-c", g.cfgPath).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "oauth2: login needed (invalid_grant") {
		t.Errorf("mailgate status: %v\n%s", err, out)
	}
	command := "mailgate oauth login -c " + g.cfgPath + " -channel support"
	if n := g.CountLog(command); n != 1 {
		t.Errorf("%d log lines name %q, want 1 (the ERROR line)", n, command)
	}
	// Meanwhile mail and a reply arrive: they wait.
	posted++
	replied++
	deliver(t, supportUser, email{From: "jane@example.test", FromName: "Jane", Subject: "waiting", Body: "mail waiting"}.raw())
	g.sendReply(t, operatorReply{ID: "r-waiting", Contact: "jane@example.test", Operator: "Olivia", Text: "reply waiting"})

	// A new login: what waited goes through, once.
	g.oauthLogin(t)
	if _, ok := ul.WaitAccepted(6*time.Minute, func(p []inboundPost) bool { return len(p) >= posted }); !ok {
		t.Fatalf("the mail that waited was not posted; log:\n%s", g.LogTail(40))
	}
	if !waitFor(2*time.Minute, func() bool { return countMessages(t, "jane@example.test", "INBOX") >= replied }) {
		t.Fatalf("the reply that waited was not delivered; log:\n%s", g.LogTail(40))
	}
	if !waitFor(time.Minute, func() bool { code, _ := g.scrape("/readyz"); return code == http.StatusOK }) {
		t.Errorf("/readyz not ready after the new login")
	}
	// Once nothing is left to post or send, no duplicate can follow: the
	// fake records a POST before mailgate commits it.
	if st, ok := g.waitStatus(t, time.Minute, func(s channelStatus) bool {
		return s.Inbound[stateFetched]+s.Inbound[statePosting] == 0 && s.OutboxPending() == 0
	}); !ok {
		t.Errorf("the store never settled: %s", st)
	}
	if n := len(ul.Accepted()); n != posted {
		t.Errorf("%d posts, want %d (each email once)", n, posted)
	}
	if n := countMessages(t, "jane@example.test", "INBOX"); n != replied {
		t.Errorf("%d replies in jane's INBOX, want %d", n, replied)
	}
	if strings.Contains(g.FullLog(), rt) {
		t.Error("a refresh token is in the log")
	}
	// Both mechanisms against real servers: Dovecot offers OAUTHBEARER and
	// XOAUTH2 to IMAP clients (mailgate picks OAUTHBEARER), Postfix's
	// submission listener offers only XOAUTH2 (start.sh).
	for _, c := range []struct{ log, want string }{
		{"dovecot.log", "method=OAUTHBEARER"},
		{"postfix.log", "sasl_method=XOAUTH2"},
	} {
		b, err := os.ReadFile(filepath.Join(suite.workDir, "logs", c.log))
		if err != nil || !strings.Contains(string(b), c.want) {
			t.Errorf("%s has no %q (%v)", c.log, c.want, err)
		}
	}
}
