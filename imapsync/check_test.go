package imapsync

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// stepNamed returns the step whose name starts with prefix.
func stepNamed(t *testing.T, steps []CheckStep, prefix string) CheckStep {
	t.Helper()
	for _, s := range steps {
		if strings.HasPrefix(s.Name, prefix) {
			return s
		}
	}
	t.Fatalf("no step %q in %+v", prefix, steps)
	return CheckStep{}
}

func TestCheck(t *testing.T) {
	ts := newTestServer(t, fullCaps)
	opts := baseOptions(ts, newRecorder())
	opts.QuarantineFolder = "Quarantine"
	opts.MoveTo = "Archive"
	if err := ts.user.Create("Archive", nil); err != nil {
		t.Fatal(err)
	}
	steps := Check(context.Background(), opts, CheckOptions{SentFolder: SentFolderAuto})
	for _, s := range steps {
		if s.Err != nil {
			t.Errorf("step %q failed: %v", s.Name, s.Err)
		}
	}
	if s := stepNamed(t, steps, "imap.quarantine_folder"); s.Note != "created it: it did not exist" {
		t.Errorf("quarantine step %+v", s)
	}
	if s := stepNamed(t, steps, "imap.move_to"); s.Note != "exists" {
		t.Errorf("move_to step %+v", s)
	}
	if s := stepNamed(t, steps, "smtp.sent_folder"); s.Name != `smtp.sent_folder "Sent"` || s.Note != "created it: it did not exist" {
		t.Errorf("sent step %+v", s)
	}
	for _, f := range []string{"Quarantine", "Sent"} {
		if _, err := ts.user.Status(f, &imap.StatusOptions{NumMessages: true}); err != nil {
			t.Errorf("Check did not create %q: %v", f, err)
		}
	}

	opts.Folders = []string{"INBOX", "Nope"}
	steps = Check(context.Background(), opts, CheckOptions{})
	if s := stepNamed(t, steps, `folder "Nope"`); s.Err == nil {
		t.Errorf("missing folder step %+v", s)
	}

	opts.Auth = PasswordAuth{Username: testUser, Password: "wrong"}
	steps = Check(context.Background(), opts, CheckOptions{})
	if last := steps[len(steps)-1]; !strings.HasPrefix(last.Name, "log in") || last.Err == nil || strings.Contains(last.Err.Error(), "wrong") {
		t.Errorf("bad login step %+v", last)
	}
}

// TestCheckStartCount: per folder, Check says how many messages the start
// point would post on a first start.
func TestCheckStartCount(t *testing.T) {
	ts := newTestServer(t, fullCaps)
	now := time.Now()
	for i, at := range []time.Time{now.AddDate(0, 0, -30), now.AddDate(0, 0, -20), now.Add(-time.Hour)} {
		if _, err := ts.user.Append("INBOX", bytes.NewReader([]byte(testMail(i+1))), &imap.AppendOptions{Time: at}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		start Start
		want  string
	}{
		{Start{}, `3 messages; start = "now" posts none of them`},
		{Start{All: true}, `3 messages; start = "all" posts all of them`},
		{Start{Since: 7 * 24 * time.Hour}, `3 messages; start = "7d" posts 1 of them`},
		{Start{Since: 25 * 24 * time.Hour}, `3 messages; start = "25d" posts 2 of them`},
	}
	for _, tt := range tests {
		opts := baseOptions(ts, newRecorder())
		opts.Start = tt.start
		s := stepNamed(t, Check(context.Background(), opts, CheckOptions{}), `folder "INBOX"`)
		if s.Err != nil || !strings.HasPrefix(s.Note, tt.want) {
			t.Errorf("start %+v: step %+v, want note %q", tt.start, s, tt.want)
		}
	}
	// Check only reads: nothing was flagged \Seen.
	for uid, fl := range ts.flags("INBOX") {
		if len(fl) != 0 {
			t.Errorf("UID %d has flags %v after Check", uid, fl)
		}
	}
}

// prefixSession behaves like Cyrus in Debian's default layout: personal
// folders live below "INBOX." with "." as the separator, and CREATE of any
// other name is refused. With refuseAll every CREATE is refused.
type prefixSession struct {
	imapserver.Session
	refuseAll bool
}

func (s prefixSession) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "INBOX.", Delim: '.'}}}, nil
}

func (s prefixSession) Create(name string, opts *imap.CreateOptions) error {
	if s.refuseAll || !strings.HasPrefix(name, "INBOX.") {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNoPerm, Text: "Permission denied"}
	}
	return s.Session.Create(name, opts)
}

func (s prefixSession) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	return s.Session.(imapserver.SessionMove).Move(w, numSet, dest)
}

// TestCheckPrefixServer: against a server that keeps folders below
// "INBOX.", Check reports the refusal with the server's words and names
// the folder that works; against one that refuses everything it says so.
func TestCheckPrefixServer(t *testing.T) {
	caps := imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}, imap.CapMove: {}, imap.CapNamespace: {}}
	ts := newTestServer(t, caps)
	ts.mu.Lock()
	ts.wrap = func(s imapserver.Session) imapserver.Session { return prefixSession{Session: s} }
	ts.mu.Unlock()
	if err := ts.user.Create("INBOX.Support", nil); err != nil {
		t.Fatal(err)
	}
	opts := baseOptions(ts, newRecorder())
	opts.Folders = []string{"INBOX", "Support"}
	opts.MoveTo = "Archive/2026"
	opts.QuarantineFolder = "INBOX.Quarantine"
	steps := Check(context.Background(), opts, CheckOptions{SentFolder: SentFolderAuto})

	if s := stepNamed(t, steps, "personal namespace"); s.Note != `prefix "INBOX.", separator "."` {
		t.Errorf("namespace step %+v", s)
	}
	if s := stepNamed(t, steps, `folder "Support"`); s.Err == nil || !strings.Contains(s.Note, `"INBOX.Support"`) {
		t.Errorf("folder step %+v", s)
	}
	s := stepNamed(t, steps, "imap.move_to")
	if s.Err == nil || !strings.Contains(s.Err.Error(), "Permission denied") ||
		s.Note != `created "INBOX.Archive.2026" instead, which the server accepts: write imap.move_to = "INBOX.Archive.2026"` {
		t.Errorf("move_to step %+v", s)
	}
	if s := stepNamed(t, steps, "imap.quarantine_folder"); s.Err != nil || s.Note != "created it: it did not exist" {
		t.Errorf("quarantine step %+v", s)
	}
	if s := stepNamed(t, steps, "smtp.sent_folder"); s.Name != `smtp.sent_folder "INBOX.Sent"` || s.Err != nil {
		t.Errorf("sent step %+v", s)
	}

	ts.mu.Lock()
	ts.wrap = func(s imapserver.Session) imapserver.Session { return prefixSession{Session: s, refuseAll: true} }
	ts.mu.Unlock()
	opts.MoveTo = "Done"
	s = stepNamed(t, Check(context.Background(), opts, CheckOptions{}), "imap.move_to")
	if s.Err == nil || s.Note != `the server refuses "INBOX.Done" too` {
		t.Errorf("refused move_to step %+v", s)
	}
}

func TestSentFolderAuto(t *testing.T) {
	ts := newTestServer(t, fullCaps)
	opts := baseOptions(ts, newRecorder())
	sf, err := NewSentFolder(opts, SentFolderAuto)
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte("From: a@b.c\r\nSubject: sent\r\n\r\nbody\r\n")
	if err := sf.AppendSent(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	// No folder is marked \Sent here, so "Sent" was created and used.
	if got := ts.flags("Sent"); len(got) != 1 {
		t.Errorf("Sent holds %d messages, want 1", len(got))
	}
}

// TestRefusedMove: a move to a folder the server will not create is not
// retried; it is reported through ActionsRefused with the server's words,
// and the message stays in its folder, flagged so that it stands out.
func TestRefusedMove(t *testing.T) {
	caps := imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}, imap.CapMove: {}, imap.CapNamespace: {}}
	ts := newTestServer(t, caps)
	ts.mu.Lock()
	ts.wrap = func(s imapserver.Session) imapserver.Session { return prefixSession{Session: s} }
	ts.mu.Unlock()
	r := newRecorder()
	ts.appendMsg("INBOX", testMail(1))
	ts.appendMsg("INBOX", testMail(2))
	opts := baseOptions(ts, r)
	opts.MoveTo = "Archive"
	w := startWatcher(t, opts)
	got := waitHandled(t, r, 2)
	v := got[0].UIDValidity
	r.addActions(
		Action{ID: 1, UIDValidity: v, UID: 1, Kind: ActionMove},
		Action{ID: 2, UIDValidity: v, UID: 2, Kind: ActionMove, Dest: "INBOX.Done"},
	)
	w.Notify()
	waitFor(t, "both actions done", func() bool { return r.doneCount() == 2 })
	r.mu.Lock()
	refused := append([]string(nil), r.refused...)
	r.mu.Unlock()
	if len(refused) != 1 || !strings.Contains(refused[0], `move to "Archive"`) || !strings.Contains(refused[0], "Permission denied") {
		t.Errorf("refused = %q", refused)
	}
	inbox := ts.flags("INBOX")
	if fl, ok := inbox[1]; !ok || !hasFlag(fl, imap.FlagFlagged) {
		t.Errorf("UID 1 in INBOX: %v %v, want kept and flagged", ok, fl)
	}
	if _, ok := inbox[2]; ok || len(ts.flags("INBOX.Done")) != 1 {
		t.Errorf("UID 2 was not moved to INBOX.Done")
	}
}
