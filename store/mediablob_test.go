package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

func TestMediaBlob(t *testing.T) { forEachBackend(t, testMediaBlob) }

func testMediaBlob(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	content := make([]byte, 2*mediaChunk+12345)
	for i := range content {
		content[i] = byte(i*31 + i/7)
	}
	const sum = "ab01"
	if _, err := db.MediaBlob(ctx, sum); !errors.Is(err, ErrNotFound) {
		t.Fatalf("MediaBlob before Put: %v", err)
	}
	for range 2 { // the second Put leaves the content alone
		if err := db.PutMediaBlob(ctx, sum, int64(len(content)), bytes.NewReader(content)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := db.MediaBlob(ctx, sum)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("read back %d bytes, %v; want %d", len(got), err, len(content))
	}
	if end, err := r.Seek(0, io.SeekEnd); err != nil || end != int64(len(content)) {
		t.Errorf("Seek(end) = %d, %v", end, err)
	}
	off := int64(mediaChunk - 10)
	if _, err := r.Seek(off, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	part := make([]byte, 100)
	if _, err := io.ReadFull(r, part); err != nil || !bytes.Equal(part, content[off:off+100]) {
		t.Errorf("read across a chunk boundary: %v", err)
	}

	empty := "e3b0"
	if err := db.PutMediaBlob(ctx, empty, 0, bytes.NewReader(nil)); err != nil {
		t.Fatal(err)
	}
	if r, err := db.MediaBlob(ctx, empty); err != nil {
		t.Fatal(err)
	} else if b, err := io.ReadAll(r); err != nil || len(b) != 0 {
		t.Errorf("empty content read back as %d bytes, %v", len(b), err)
	}

	if err := db.PutMedia(ctx, &Media{ID: "m1", SHA256: sum, Size: int64(len(content))}); err != nil {
		t.Fatal(err)
	}
	if n, err := db.DeleteMediaBlob(ctx, sum); err != nil || n != 0 {
		t.Fatalf("DeleteMediaBlob of a referenced content = %d, %v", n, err)
	}
	if err := db.DeleteMedia(ctx, []string{"m1"}); err != nil {
		t.Fatal(err)
	}
	if n, err := db.DeleteMediaBlob(ctx, sum); err != nil || n != int64(len(content)) {
		t.Fatalf("DeleteMediaBlob = %d, %v; want %d", n, err, len(content))
	}
	if _, err := db.MediaBlob(ctx, sum); !errors.Is(err, ErrNotFound) {
		t.Fatalf("MediaBlob after delete: %v", err)
	}
}

// TestPostgresMigration takes a PostgreSQL database back to schema
// version 13 (before media_chunks, outbox.claimed_by and inbound_text)
// and opens it again: 014's and 016's PostgreSQL versions and 015 run.
func TestPostgresMigration(t *testing.T) {
	ctx := context.Background()
	dsn := postgresServer(t).NewDatabase(t)
	db, err := OpenPostgres(ctx, dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.write.ExecContext(ctx, `DROP TABLE inbound_text; ALTER TABLE inbound ADD COLUMN full_text TEXT NOT NULL DEFAULT '';
		DROP TABLE media_chunks; ALTER TABLE outbox DROP COLUMN claimed_by; UPDATE mailgate_schema SET version = 13`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = OpenPostgres(ctx, dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ms, _ := migrations()
	if v, err := db.SchemaVersion(ctx); err != nil || v != len(ms) {
		t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, len(ms))
	}
	if err := db.PutMediaBlob(ctx, "ab", 3, bytes.NewReader([]byte("abc"))); err != nil {
		t.Fatal(err)
	}
	if ms[13].pg == "" {
		t.Error("migration 014 has no PostgreSQL version")
	}
}
