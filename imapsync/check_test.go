package imapsync

import (
	"context"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	ts := newTestServer(t, fullCaps)
	opts := baseOptions(ts, newRecorder())
	opts.QuarantineFolder = "Quarantine"
	steps := Check(context.Background(), opts)
	var failed []string
	for _, s := range steps {
		if s.Err != nil {
			failed = append(failed, s.Name)
		}
	}
	if len(failed) > 0 || len(steps) < 4 {
		t.Errorf("steps %+v, failed %v", steps, failed)
	}
	if last := steps[len(steps)-1]; !strings.Contains(last.Note, "created when first needed") {
		t.Errorf("quarantine step %+v", last)
	}

	opts.Folders = []string{"INBOX", "Nope"}
	steps = Check(context.Background(), opts)
	if s := steps[len(steps)-2]; s.Name != `folder "Nope"` || s.Err == nil {
		t.Errorf("missing folder step %+v", s)
	}

	opts.Auth = PasswordAuth{Username: testUser, Password: "wrong"}
	steps = Check(context.Background(), opts)
	if last := steps[len(steps)-1]; !strings.HasPrefix(last.Name, "log in") || last.Err == nil || strings.Contains(last.Err.Error(), "wrong") {
		t.Errorf("bad login step %+v", last)
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
