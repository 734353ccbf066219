//go:build unix

package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"
)

// childDBEnv names the database the crash child writes to.
const childDBEnv = "MAILGATE_STORE_CRASH_CHILD_DB"

// childBatchEnv, when set, has the crash child record a batch
// (RecordInbounds) instead of one row.
const childBatchEnv = "MAILGATE_STORE_CRASH_CHILD_BATCH"

// childAcceptEnv, when set, has the crash child record a row with two
// posts and accept both through the accept log, folding neither.
const childAcceptEnv = "MAILGATE_STORE_CRASH_CHILD_ACCEPT"

// TestHelperChild is not a test: TestKill9KeepsCommits runs the test binary
// again with it selected. It commits one ledger row, says so, and waits to
// be killed.
func TestHelperChild(t *testing.T) {
	path := os.Getenv(childDBEnv)
	if path == "" {
		t.Skip("crash child only")
	}
	ctx := context.Background()
	accept := os.Getenv(childAcceptEnv) != ""
	db, err := Open(ctx, path, Options{AcceptLog: accept, foldManually: accept})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	if accept {
		res, err := db.RecordInbound(ctx, newInbound(90, "ann@example.org", 2))
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(2)
		}
		for seq := range 2 {
			if _, err := db.PostAccepted(ctx, DuePost{LedgerID: res.ID, Seq: seq, Total: 2}); err != nil {
				fmt.Println("error:", err)
				os.Exit(2)
			}
		}
	} else if os.Getenv(childBatchEnv) != "" {
		// A batch, then the kill: between the batch's commit and any
		// barrier, IMAP action or later write.
		batch := []*Inbound{newInbound(80, "a@example.org", 1), newInbound(81, "b@example.org", 2), newInbound(82, "a@example.org", 1)}
		batch[2].DedupeKey = batch[0].DedupeKey
		if _, err := db.RecordInbounds(ctx, batch); err != nil {
			fmt.Println("error:", err)
			os.Exit(2)
		}
	} else if _, err := db.RecordInbound(ctx, newInbound(77, "crash@example.org", 2)); err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	fmt.Println("committed")
	// Never closes db: the WAL is not checkpointed before the kill.
	time.Sleep(time.Minute)
	os.Exit(3)
}

// TestKill9KeepsCommits kills a process right after it committed a write
// and checks that the write is there.
func TestKill9KeepsCommits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crash.db")
	killChild(t, path)
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Logf("no WAL left behind: %v", err)
	}

	db, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	list, err := db.ListInbound(context.Background(), InboundFilter{Channel: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].UID != 77 || list[0].State != StateFetched || list[0].Contact != "crash@example.org" {
		t.Fatalf("after kill -9: ledger = %+v", list)
	}
	in, err := db.Inbound(context.Background(), list[0].ID)
	if err != nil || len(in.Posts) != 2 || len(in.Raw) == 0 {
		t.Fatalf("after kill -9: row = %+v, %v", in, err)
	}
	if c, err := db.Cursor(context.Background(), "c", "INBOX"); err != nil || c != (Cursor{UIDValidity: 1, UID: 77}) {
		t.Fatalf("after kill -9: cursor = %+v, %v", c, err)
	}
	if th, ok, err := db.Thread(context.Background(), "c", "crash@example.org"); err != nil || !ok || len(th.MessageIDs) != 1 {
		t.Fatalf("after kill -9: thread = %+v, %v, %v", th, ok, err)
	}
}

// TestKill9KeepsBatch kills a process right after it committed a batch of
// ledger rows (RecordInbounds) and checks that every row and the cursor
// are there: the batch and its cursor commit together.
func TestKill9KeepsBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crash.db")
	killChild(t, path, childBatchEnv+"=1")

	db, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	list, err := db.ListInbound(context.Background(), InboundFilter{Channel: "c"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint32]InboundState{}
	for _, in := range list {
		got[in.UID] = in.State
	}
	want := map[uint32]InboundState{80: StateFetched, 81: StateFetched, 82: StateSkipped}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after kill -9: ledger states %v, want %v", got, want)
	}
	if c, err := db.Cursor(context.Background(), "c", "INBOX"); err != nil || c != (Cursor{UIDValidity: 1, UID: 82}) {
		t.Fatalf("after kill -9: cursor = %+v, %v", c, err)
	}
	due, err := db.DuePosts(context.Background(), "c", nil, 10)
	if err != nil || len(due) != 2 {
		t.Fatalf("after kill -9: due posts %+v, %v; want the first posts of uids 80 and 81", due, err)
	}
}

// TestKill9KeepsAcceptances kills a process right after the accept log
// took two acceptances that no commit folded, and checks that the next
// Open folds them: neither post is due again.
func TestKill9KeepsAcceptances(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crash.db")
	killChild(t, path, childAcceptEnv+"=1")
	if b, err := os.ReadFile(path + "-accepted"); err != nil || len(decodeAccepts(b)) != 1 {
		t.Fatalf("accept log after kill -9: %v; want the acceptances of one row", err)
	}
	db, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	list, err := db.ListInbound(context.Background(), InboundFilter{Channel: "c"})
	if err != nil || len(list) != 1 || list[0].State != StatePosted || list[0].PostsDone != 2 {
		t.Fatalf("after kill -9: ledger %+v, %v; want one posted row", list, err)
	}
	if due, err := db.DuePosts(context.Background(), "c", nil, 10); err != nil || len(due) != 0 {
		t.Fatalf("after kill -9: due posts %+v, %v; want none", due, err)
	}
}

// killChild runs TestHelperChild with the crash child's database at path
// and env, waits until it says it committed, and kills it with SIGKILL.
func killChild(t *testing.T, path string, env ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a child process")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperChild$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), childDBEnv+"="+path), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "committed" {
		t.Logf("child: %s", sc.Text())
	}
	if sc.Text() != "committed" {
		t.Fatalf("child ended without committing (scan error %v)", sc.Err())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v", cmd.ProcessState)
	}
}
