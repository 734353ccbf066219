package store

import (
	"context"
	"database/sql"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var updateSchema = flag.Bool("update-schema", false, "rewrite store/schema.sql from the migrations")

// migratedDB returns a database brought to version n by replaying the
// first n migrations, as an old installation upgraded step by step.
func migratedDB(t *testing.T, n int) *sql.DB {
	t.Helper()
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", dsn(filepath.Join(t.TempDir(), "migrated.db"), time.Second, false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	for _, m := range ms[:n] {
		if _, err := db.Exec(m.sql); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
	}
	if _, err := db.Exec("PRAGMA user_version = " + strconv.Itoa(n)); err != nil {
		t.Fatal(err)
	}
	return db
}

// schemaObjects lists type, name and SQL text of every schema object.
func schemaObjects(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT type, name, coalesce(sql, '') FROM sqlite_master ORDER BY type, name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var typ, name, text string
		if err := rows.Scan(&typ, &name, &text); err != nil {
			t.Fatal(err)
		}
		out = append(out, typ+" "+name+"\n"+text)
	}
	return out
}

// dumpSchema renders the schema of db as one SQL file, in creation order.
func dumpSchema(t *testing.T, db *sql.DB) string {
	t.Helper()
	rows, err := db.Query(`SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY rowid`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	b.WriteString(`-- schema.sql: mailgate's whole store schema at the newest migration.
--
-- A new database is created from this file; an existing one is brought here
-- by the numbered migrations in schema/. Do not edit by hand: add a
-- migration, then run
--
--     go test ./store -run TestSchemaFile -update-schema
--
-- All times are unix milliseconds (INTEGER); 0 means "unset". Booleans are
-- INTEGER 0/1. The comments inside the statements come from the migration
-- that created each table.
`)
	for rows.Next() {
		var text string
		if err := rows.Scan(&text); err != nil {
			t.Fatal(err)
		}
		b.WriteString("\n" + text + ";\n")
	}
	return b.String()
}

// TestSchemaFile: store/schema.sql is exactly the schema that the
// migrations build, and a new database created from it equals one
// upgraded migration by migration.
func TestSchemaFile(t *testing.T) {
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	migrated := migratedDB(t, len(ms))
	want := dumpSchema(t, migrated)
	if *updateSchema {
		if err := os.WriteFile("schema.sql", []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Skip("store/schema.sql rewritten")
	}
	if currentSchema != want {
		t.Fatalf("store/schema.sql is not the schema the migrations build; run\n\tgo test ./store -run TestSchemaFile -update-schema")
	}
	db, _ := openTest(t)
	if v, err := db.SchemaVersion(context.Background()); err != nil || v != len(ms) {
		t.Fatalf("a new database has schema version %d (%v), want %d", v, err, len(ms))
	}
	got, wantObjs := schemaObjects(t, db.write), schemaObjects(t, migrated)
	if strings.Join(got, "\n\n") != strings.Join(wantObjs, "\n\n") {
		t.Errorf("a new database differs from a migrated one:\n%s\n---\n%s", strings.Join(got, "\n\n"), strings.Join(wantObjs, "\n\n"))
	}
}

// TestUpgradeFromFirstSchema fills a database of the first released schema
// (migration 001) with a row of every table, opens it with this mailgate
// and checks that everything is still there and works: the cursor, a
// posted row and a copy skipped as its duplicate (whose relation is now a
// column), a row still to post, the outbox, the thread and the media row.
func TestUpgradeFromFirstSchema(t *testing.T) {
	ctx := context.Background()
	old := migratedDB(t, 1)
	for _, q := range []string{
		`INSERT INTO cursors VALUES ('c', 'INBOX', 7, 3, 1)`,
		`INSERT INTO inbound (id, channel, folder, uidvalidity, uid, dedupe_key, contact, state, reason, posts_total, posts_done, created_at, updated_at, full_text)
			VALUES (1, 'c', 'INBOX', 7, 1, 'mid:<a@x>', 'jane@example.org', 'posted', 'sender verified', 1, 1, 1, 1, 'Hello')`,
		`INSERT INTO inbound (id, channel, folder, uidvalidity, uid, dedupe_key, contact, state, reason, created_at, updated_at)
			VALUES (2, 'c', 'INBOX', 7, 2, 'mid:<a@x>', 'jane@example.org', 'skipped', 'duplicate of #1', 1, 1)`,
		`INSERT INTO inbound (id, channel, folder, uidvalidity, uid, dedupe_key, contact, state, posts_total, after_kind, created_at, updated_at)
			VALUES (3, 'c', 'INBOX', 7, 3, 'mid:<b@x>', 'bob@example.org', 'fetched', 1, 'seen', 1, 1)`,
		`INSERT INTO inbound_posts VALUES (3, 0, '{"text":"still to post"}')`,
		`INSERT INTO threads (id, channel, contact, subject, created_at, updated_at) VALUES (1, 'c', 'jane@example.org', 'question', 1, 1)`,
		`INSERT INTO thread_messages (thread_id, message_id, created_at) VALUES (1, 'a@x', 1)`,
		`INSERT INTO outbox (channel, contact, userlike_id, text, state, send_after, created_at, updated_at)
			VALUES ('c', 'jane@example.org', 'u1', 'an answer', 'queued', 1, 1, 1)`,
		`INSERT INTO media VALUES ('m1', 'abc', 3, 'text/plain', 'a.txt', 'c', 3, 1)`,
		`INSERT INTO installation_keys VALUES ('media', x'00', 1)`,
	} {
		if _, err := old.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var path string
	if err := old.QueryRow(`SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&path); err != nil {
		t.Fatal(err)
	}
	old.Close()

	db, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ms, _ := migrations()
	if v, err := db.SchemaVersion(ctx); err != nil || v != len(ms) {
		t.Fatalf("schema version %d (%v), want %d", v, err, len(ms))
	}
	if c, err := db.Cursor(ctx, "c", "INBOX"); err != nil || c.UIDValidity != 7 || c.UID != 3 {
		t.Errorf("cursor %+v, %v", c, err)
	}
	dup, err := db.Inbound(ctx, 2)
	if err != nil || dup.DuplicateOf != 1 || dup.State != StateSkipped {
		t.Errorf("duplicate row %+v, %v", dup, err)
	}
	if orig, err := db.Inbound(ctx, 1); err != nil || orig.DuplicateOf != 0 || orig.FullText != "Hello" {
		t.Errorf("original row %+v, %v", orig, err)
	}
	due, err := db.DuePosts(ctx, "c", nil, 10)
	if err != nil || len(due) != 1 || due[0].LedgerID != 3 || string(due[0].Body) != `{"text":"still to post"}` {
		t.Errorf("due posts %+v, %v", due, err)
	}
	if th, ok, err := db.Thread(ctx, "c", "jane@example.org"); err != nil || !ok || th.Subject != "question" {
		t.Errorf("thread %+v %v %v", th, ok, err)
	}
	if n, err := db.OutboxCounts(ctx, "c"); err != nil || n[OutboxQueued] != 1 {
		t.Errorf("outbox counts %v, %v", n, err)
	}
	// A new email with the same key is a duplicate of row 1, by column.
	in := newInbound(9, "jane@example.org", 1)
	in.DedupeKey = "mid:<a@x>"
	in.UIDValidity = 7
	res, err := db.RecordInbound(ctx, in)
	if err != nil || res.DuplicateOf != 1 || in.DuplicateOf != 1 {
		t.Errorf("RecordInbound after the upgrade: %+v %d, %v", res, in.DuplicateOf, err)
	}
}
