package store

import (
	"context"
	"errors"
	"mailgate/internal/fakeclock"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// openTest opens a fresh database in a temporary directory, or on
// PostgreSQL under forEachBackend's "postgres" subtest.
func openTest(t testing.TB) (*DB, *fakeclock.Clock) {
	t.Helper()
	clk := fakeclock.New(time.UnixMilli(1_700_000_000_000))
	if onPostgres(t) {
		return openPostgresTest(t, Options{Now: clk.Now}), clk
	}
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "state", "mailgate.db"), Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, clk
}

func TestOpenMigratesAndReopens(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "mailgate.db")
	db, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if v, err := db.SchemaVersion(ctx); err != nil || v != len(ms) || v < 1 {
		t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, len(ms))
	}

	// Every pooled connection has the pragmas from the DSN.
	for _, c := range []struct {
		name   string
		pragma string
		want   string
	}{
		{"writer", "journal_mode", "wal"},
		// NORMAL: durability comes from Barrier (see barrier_test.go).
		{"writer", "synchronous", "1"},
		{"writer", "foreign_keys", "1"},
		{"writer", "busy_timeout", "5000"},
		{"reader", "journal_mode", "wal"},
		{"reader", "foreign_keys", "1"},
		{"reader", "query_only", "1"},
		{"reader", "busy_timeout", "5000"},
	} {
		pool := db.write
		if c.name == "reader" {
			pool = db.read
		}
		var got string
		if err := pool.QueryRowContext(ctx, "PRAGMA "+c.pragma).Scan(&got); err != nil {
			t.Fatalf("%s PRAGMA %s: %v", c.name, c.pragma, err)
		}
		if got != c.want {
			t.Errorf("%s PRAGMA %s = %q, want %q", c.name, c.pragma, got, c.want)
		}
	}
	if _, err := db.read.ExecContext(ctx, `DELETE FROM cursors`); err == nil {
		t.Error("reader pool accepted a write")
	}

	if err := db.SetCursor(ctx, "c", "INBOX", Cursor{UIDValidity: 9, UID: 4}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{dir, 0o700 | os.ModeDir}, {path, 0o600}} {
		st, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != f.mode {
			t.Errorf("mode of %s = %v, want %v", f.path, st.Mode(), f.mode)
		}
	}

	db, err = Open(ctx, path, Options{BusyTimeout: time.Second})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db.Close()
	if v, err := db.SchemaVersion(ctx); err != nil || v != len(ms) {
		t.Fatalf("SchemaVersion after reopen = %d, %v; want %d", v, err, len(ms))
	}
	if c, err := db.Cursor(ctx, "c", "INBOX"); err != nil || c != (Cursor{UIDValidity: 9, UID: 4}) {
		t.Fatalf("Cursor after reopen = %+v, %v", c, err)
	}
	var bt int
	if err := db.readQueryRowOnce(ctx, "PRAGMA busy_timeout").Scan(&bt); err != nil || bt != 1000 {
		t.Errorf("busy_timeout = %d, %v; want 1000", bt, err)
	}
	// The WAL file shares the database file's mode.
	if st, err := os.Stat(path + "-wal"); err == nil && st.Mode().Perm() != 0o600 {
		t.Errorf("mode of -wal = %v, want 0600", st.Mode().Perm())
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "mailgate.db")
	db, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	newer := len(ms) + 1
	if _, err := db.writeExec(ctx, "PRAGMA user_version = "+strconv.Itoa(newer)); err != nil {
		t.Fatal(err)
	}
	db.Close()

	_, err = Open(ctx, path, Options{})
	if err == nil {
		t.Fatal("Open of a newer schema succeeded")
	}
	want := "store: " + path + " has schema version " + strconv.Itoa(newer) + ", but this mailgate knows only up to " +
		strconv.Itoa(len(ms)) + "; upgrade mailgate or restore a backup"
	if err.Error() != want {
		t.Fatalf("error = %q\nwant    %q", err, want)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, "", Options{}); err == nil {
		t.Error("Open(\"\") succeeded")
	}
	// The parent "directory" is a file.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctx, filepath.Join(file, "db"), Options{})
	if err == nil || !strings.Contains(err.Error(), "store: open") {
		t.Errorf("Open under a file: %v", err)
	}
}

func TestMigrationVersion(t *testing.T) {
	for _, c := range []struct {
		name string
		want int
		ok   bool
	}{
		{"001_init.sql", 1, true},
		{"012_outbound.sql", 12, true},
		{"init.sql", 0, false},
		{"000_zero.sql", 0, false},
		{"x1_a.sql", 0, false},
		{"002_a.txt", 0, false},
	} {
		got, err := migrationVersion(c.name)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("migrationVersion(%q) = %d, %v; want %d, ok=%v", c.name, got, err, c.want, c.ok)
		}
	}
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].name != "001_init.sql" {
		t.Fatalf("migrations = %v", ms)
	}
}

func TestInstallationKey(t *testing.T) { forEachBackend(t, testInstallationKey) }

func testInstallationKey(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()

	var wg sync.WaitGroup
	keys := make([][]byte, 8)
	errs := make([]error, 8)
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys[i], errs[i] = db.InstallationKey(ctx, "media-hmac", 32)
		}()
	}
	wg.Wait()
	for i := range keys {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if len(keys[i]) != 32 || string(keys[i]) != string(keys[0]) {
			t.Fatalf("key %d differs or has wrong size", i)
		}
	}
	other, err := db.InstallationKey(ctx, "other", 32)
	if err != nil {
		t.Fatal(err)
	}
	if string(other) == string(keys[0]) {
		t.Fatal("two names share a key")
	}
	if _, err := db.InstallationKey(ctx, "media-hmac", 16); err == nil {
		t.Fatal("size mismatch accepted")
	}
	if _, err := db.InstallationKey(ctx, "", 16); err == nil {
		t.Fatal("empty name accepted")
	}
}

func TestNotFoundErrors(t *testing.T) { forEachBackend(t, testNotFoundErrors) }

func testNotFoundErrors(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	checks := map[string]error{}
	_, checks["Inbound"] = db.Inbound(ctx, 42)
	checks["MarkPosting"] = db.MarkPosting(ctx, 42)
	_, checks["PostDone"] = db.PostDone(ctx, 42, 0)
	checks["MarkDead"] = db.MarkDead(ctx, 42, "x")
	checks["SetLastError"] = db.SetLastError(ctx, 42, "x")
	_, checks["Requeue"] = db.Requeue(ctx, 42)
	_, checks["Media"] = db.Media(ctx, "nope")
	_, checks["Outbox"] = db.Outbox(ctx, 42)
	_, _, checks["CancelOutbox"] = db.CancelOutbox(ctx, "c", "nope")
	for name, err := range checks {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: error %v is not ErrNotFound", name, err)
		}
		if err != nil && strings.Count(err.Error(), "store:") != 1 {
			t.Errorf("%s: error %q repeats the prefix", name, err)
		}
	}
}

// TestQueryPlans checks that the hot queries stay on their indexes (a
// full scan of the ledger would grow with its history).
func TestQueryPlans(t *testing.T) {
	db, _ := openTest(t)
	for _, c := range []struct {
		name  string
		query string
		args  []any
		index string
	}{
		{"record lookup: dedupe", qRecordLookup, []any{"c", "k", "c", "INBOX", 1, 1}, "inbound_dedupe"},
		{"record lookup: uid", qRecordLookup, []any{"c", "k", "c", "INBOX", 1, 1}, "sqlite_autoindex_inbound_1"},
		{"due posts", qUnfinished, []any{"c", 0, 400}, "inbound_unfinished"},
		{"pending actions", qPendingActions, []any{"c", "INBOX", 10}, "inbound_actions"},
		{"count from contact", qCountFromContact, []any{"c", "a", 0}, "inbound_contact"},
		{"refetches", qRefetches, []any{"c", "INBOX", 1}, "inbound_refetch"},
	} {
		rows, err := db.read.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+c.query, c.args...)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		all := strings.Join(plan, "\n")
		if !strings.Contains(all, "INDEX "+c.index+" ") || strings.Contains(all, "SCAN inbound") {
			t.Errorf("%s: plan does not use %s:\n%s", c.name, c.index, all)
		}
	}
}

// FuzzMigrationVersion checks that migrationVersion never panics and only
// accepts NNN_name.sql with a positive number.
func FuzzMigrationVersion(f *testing.F) {
	for _, s := range []string{"001_init.sql", "12_x.sql", "_x.sql", "-1_x.sql", "1_.sql", "a_b.sql", "001.sql"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		n, err := migrationVersion(name)
		if err != nil {
			return
		}
		num, _, _ := strings.Cut(name, "_")
		if n <= 0 || !strings.HasSuffix(name, ".sql") || strconv.Itoa(n) != strings.TrimLeft(num, "0+") {
			t.Fatalf("migrationVersion(%q) = %d", name, n)
		}
	})
}
