package mailsys

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadEnv(t *testing.T) {
	dir := t.TempDir()
	full := "IMAP_ADDR=127.0.0.1:1143\nLMTP_ADDR=127.0.0.1:1024\nSMTP_ADDR=127.0.0.1:1025\nPOSTFIX_CONFIG_DIR=/x/postfix\nDOVECOT_CONF=/x/dovecot.conf\nMAIL_DIR=/x/mail\nMAIL_PASSWORD=pw=with=equals\nnoise\n"
	p := filepath.Join(dir, "env")
	if err := os.WriteFile(p, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	vars, err := ReadEnv(p)
	if err != nil || vars["MAIL_PASSWORD"] != "pw=with=equals" || vars["IMAP_ADDR"] != "127.0.0.1:1143" {
		t.Fatalf("ReadEnv = %v, %v", vars, err)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(full, "MAIL_DIR=/x/mail\n", "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadEnv(p); err == nil || !strings.Contains(err.Error(), "no MAIL_DIR") {
		t.Errorf("missing key: %v", err)
	}
}

func TestFreePort(t *testing.T) {
	p, err := FreePort()
	if err != nil || p == "" || p == "0" {
		t.Fatalf("FreePort = %q, %v", p, err)
	}
}
