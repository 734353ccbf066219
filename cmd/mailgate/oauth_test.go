package main

import (
	"context"
	"fmt"
	"log/slog"
	"mailgate/internal/syncbuf"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mailgate/config"
	"mailgate/devmail"
	"mailgate/oauthtest"
	"mailgate/store"
)

// newOAuthEnv is newTestEnv for a channel that logs in with delegated
// OAuth2 (device code) at auth: the mail system accepts only tokens that
// auth's introspection endpoint calls active. delivered receives the user
// of every message the relay delivers.
func newOAuthEnv(t *testing.T, auth *oauthtest.Server, delivered chan<- string) *testEnv {
	t.Helper()
	e := newEnvBase(t, devmail.Options{
		TokenCheck: auth.CheckByIntrospection(),
		Delivered:  func(user string, _ []byte) { delivered <- user },
	})
	dm := e.mail
	cfg := fmt.Sprintf(`
[server]
listen = %[1]q
public_url = "http://%[1]s"

[metrics]
listen = %[2]q

[store]
path = %[3]q

[[channel]]
name = "support"

[channel.userlike]
inbound_url = %[4]q
inbound_token = %[5]q
outbound_token = "outbound-token-xyz"

[channel.imap]
address = %[6]q
security = "none"
username = %[7]q
start = "all"

[channel.smtp]
address = %[8]q
security = "none"
from = "Example Support <support@example.test>"
coalesce = "0s"

[channel.verify]
trusted_authserv_ids = ["mx.example.test"]

[channel.oauth2]
provider = "generic"
mode = "delegated"
client_id = "mailgate"
token_url = %[9]q
device_url = %[10]q
`, e.httpAddr, e.metricsAddr, filepath.Join(e.dir, "state", "mailgate.db"), e.ul.srv.URL, inboundToken,
		dm.IMAPAddr(), supportUser, dm.SMTPAddr(), auth.TokenURL(), auth.DeviceURL())
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// startLogging is start with the daemon's log written to w.
func (e *testEnv) startLogging(w *syncbuf.Buffer) {
	e.t.Helper()
	cfg, err := config.Load(e.cfgPath, config.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	d, err := startDaemon(ctx, daemonOptions{Config: cfg, ConfigPath: e.cfgPath, Logger: log, Listen: e.listen})
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		cancel()
		if err := d.wait(); err != nil {
			e.t.Errorf("daemon stopped with %v", err)
		}
		e.t.Log(w.String())
	})
}

// oauthLogin runs `mailgate oauth login` and approves its device code at
// auth as the support mailbox.
func (e *testEnv) oauthLogin(auth *oauthtest.Server) {
	e.t.Helper()
	out := &syncbuf.Buffer{}
	env := &environment{stdin: strings.NewReader(""), stdout: out, stderr: out, getenv: func(string) string { return "" }}
	done := make(chan int, 1)
	go func() {
		done <- execute(context.Background(), env, []string{"oauth", "login", "-c", e.cfgPath, "-channel", "support"})
	}()
	codeRE := regexp.MustCompile(`enter the code\s+(\S+)`)
	deadline := time.Now().Add(waitLimit)
	for {
		if m := codeRE.FindStringSubmatch(out.String()); m != nil {
			if err := auth.ApproveDevice(m[1], supportUser); err != nil {
				e.t.Fatal(err)
			}
			break
		}
		select {
		case code := <-done:
			e.t.Fatalf("oauth login exited %d before showing a code:\n%s", code, out)
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("oauth login shows no code:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := <-done; code != 0 || !strings.Contains(out.String(), "is logged in") {
		e.t.Fatalf("oauth login exited %d:\n%s", code, out)
	}
}

func waitDelivered(t *testing.T, delivered <-chan string, user string) {
	t.Helper()
	select {
	case got := <-delivered:
		if got != user {
			t.Fatalf("delivered to %s, want %s", got, user)
		}
	case <-time.After(waitLimit):
		t.Fatalf("no delivery to %s", user)
	}
}

// TestDaemonOAuth2 runs a delegated OAuth2 channel through its life: no
// login yet (login needed everywhere, mail and replies wait), login (what
// waited goes through), revocation by an administrator (login needed
// again, nothing lost), and a new login.
func TestDaemonOAuth2(t *testing.T) {
	auth, err := oauthtest.Start(oauthtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { auth.Close() })
	auth.AddClient(oauthtest.Client{ID: "mailgate"})
	delivered := make(chan string, 10)
	e := newOAuthEnv(t, auth, delivered)
	logs := &syncbuf.Buffer{}
	e.deliver(customerMail("jane@example.test", "Jane", "w1@example.test", "Waiting", "first"))
	e.startLogging(logs)

	base := "http://" + e.metricsAddr
	command := "mailgate oauth login -c " + e.cfgPath + " -channel support"
	waitScrape(t, base+"/readyz", 503, `channel \"support\": OAuth2 login needed (no login yet); run: `+command)
	waitScrape(t, base+"/metrics", 200, `mailgate_oauth_login_needed{channel="support"} 1`)
	if code, out, _ := runCLI(t, "", "status", "-c", e.cfgPath); code != 0 || !strings.Contains(out, "oauth2: login needed (no login yet): run "+command) {
		t.Fatalf("status exit %d:\n%s", code, out)
	}
	if code, resp := e.webhook("outbound-token-xyz", `{"message":{"id":"op-1","text":"Hi Jane.","operator":{"name":"Olivia"}},"contact":{"email":"jane@example.test"}}`); code != 200 {
		t.Fatalf("webhook: %d %s", code, resp)
	}

	e.oauthLogin(auth)
	e.ul.waitPosts(1)
	waitDelivered(t, delivered, "jane@example.test")
	waitScrape(t, base+"/readyz", 200, `"ready"`)
	waitScrape(t, base+"/metrics", 200, `mailgate_oauth_login_needed{channel="support"} 0`)
	if code, out, _ := runCLI(t, "", "oauth", "status", "-c", e.cfgPath); code != 0 || !strings.Contains(out, "grant device_code, access token expires in") {
		t.Fatalf("oauth status exit %d:\n%s", code, out)
	}

	// An administrator revokes the grant; the IMAP server restarts, so
	// the daemon must log in again.
	db, err := store.Open(context.Background(), filepath.Join(e.dir, "state", "mailgate.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := db.OAuthRefreshToken(context.Background(), "support")
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	auth.Revoke(rt)
	addr := e.mail.IMAPAddr()
	e.mail.StopIMAP()
	e.deliver(customerMail("jane@example.test", "Jane", "w2@example.test", "Waiting", "second"))
	if err := e.mail.StartIMAP(addr); err != nil {
		t.Fatal(err)
	}
	waitScrape(t, base+"/readyz", 503, `OAuth2 login needed (invalid_grant`)
	waitScrape(t, base+"/metrics", 200, `mailgate_oauth_login_needed{channel="support"} 1`)
	if _, out, _ := runCLI(t, "", "status", "-c", e.cfgPath); !strings.Contains(out, "oauth2: login needed (invalid_grant") {
		t.Fatalf("status after revocation:\n%s", out)
	}
	if code, resp := e.webhook("outbound-token-xyz", `{"message":{"id":"op-2","text":"Still there?","operator":{"name":"Olivia"}},"contact":{"email":"jane@example.test"}}`); code != 200 {
		t.Fatalf("webhook: %d %s", code, resp)
	}

	e.oauthLogin(auth)
	if got := e.ul.waitPosts(2); !strings.Contains(got[1].Text, "second") {
		t.Errorf("second post %+v", got[1])
	}
	waitDelivered(t, delivered, "jane@example.test")
	waitScrape(t, base+"/readyz", 200, `"ready"`)

	// One ERROR line per refusal, each naming the channel and the command.
	lines := regexp.MustCompile(`(?m)^.*level=ERROR.*$`).FindAllString(logs.String(), -1)
	if len(lines) != 2 {
		t.Fatalf("%d ERROR lines, want 2:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for _, l := range lines {
		if !strings.Contains(l, `channel \"support\": login needed`) || !strings.Contains(l, command) {
			t.Errorf("ERROR line lacks channel or command: %s", l)
		}
	}
	if strings.Contains(logs.String(), rt) {
		t.Fatal("the refresh token is in the log")
	}
}

// check-config -connect obtains a token and logs in to IMAP and SMTP with
// it; a wrong client secret fails at the token, without showing it.
func TestCheckConfigConnectOAuth2(t *testing.T) {
	auth, err := oauthtest.Start(oauthtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { auth.Close() })
	auth.AddClient(oauthtest.Client{ID: "app", Secret: "app-s3cret", Subject: supportUser})
	e := newOAuthEnv(t, auth, make(chan string, 10))
	delegated := "mode = \"delegated\"\nclient_id = \"mailgate\"\n"
	appOnly := "mode = \"app-only\"\nclient_id = \"app\"\nclient_secret = \"app-s3cret\"\n"
	cfg := readFile(t, e.cfgPath)
	if !strings.Contains(cfg, delegated) {
		t.Fatal("config layout changed")
	}
	writeFile(t, e.cfgPath, strings.Replace(cfg, delegated, appOnly, 1))

	code, out, errOut := runCLI(t, "", "check-config", "-connect", "-c", e.cfgPath)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"oauth2 generic app-only (client_credentials)",
		"ok      support: oauth2: obtain an access token (client_credentials, " + auth.TokenURL() + ")",
		`ok      support: imap: log in as "support@example.test"`,
		"ok      support: smtp: connect to",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code, out, _ := runCLI(t, "", "oauth", "status", "-c", e.cfgPath); code != 0 || !strings.Contains(out, "grant client_credentials, access token expires in") {
		t.Errorf("oauth status exit %d:\n%s", code, out)
	}

	writeFile(t, e.cfgPath, strings.Replace(cfg, delegated, strings.Replace(appOnly, "app-s3cret", "wrong-s3cret", 1), 1))
	code, out, errOut = runCLI(t, "", "check-config", "-connect", "-c", e.cfgPath)
	if code == 0 || !strings.Contains(out, "FAILED  support: oauth2: obtain an access token") || !strings.Contains(out, "invalid_client") {
		t.Fatalf("wrong secret: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(out+errOut, "s3cret") {
		t.Fatalf("output shows the secret:\n%s%s", out, errOut)
	}
}
