package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"mailgate/config"
	"mailgate/internal/pgtest"
	"mailgate/media"
)

// TestOpenDB opens the store each driver names; two handles on one
// PostgreSQL database share the installation keys.
func TestOpenDB(t *testing.T) {
	ctx := context.Background()
	lite := &config.Config{Store: config.Store{Driver: config.StoreSQLite, Path: filepath.Join(t.TempDir(), "m.db")}}
	db, err := openDB(ctx, lite)
	if err != nil {
		t.Fatal(err)
	}
	if db.Driver() != "sqlite" || db.Path() != lite.Store.Path {
		t.Errorf("sqlite: opened %s %s", db.Driver(), db.Path())
	}
	db.Close()

	dsn := pgtest.New(t).NewDatabase(t)
	pg := &config.Config{Store: config.Store{Driver: config.StorePostgres, DSN: config.NewSecret(dsn)}}
	var keys [][]byte
	for range 2 {
		db, err := openDB(ctx, pg)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if db.Driver() != "postgres" {
			t.Errorf("postgres: opened %s", db.Driver())
		}
		k, err := db.InstallationKey(ctx, "message-id", 32)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if !bytes.Equal(keys[0], keys[1]) {
		t.Error("two instances on one database got different installation keys")
	}
}

// TestMediaAcrossInstances stores an attachment through the media library
// of one instance of a PostgreSQL store and downloads its signed URL from
// another instance's, which has its own (empty) media.dir; the sweep of
// either removes the content once no record refers to it.
func TestMediaAcrossInstances(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.New(t).NewDatabase(t)
	cfg := &config.Config{Store: config.Store{Driver: config.StorePostgres, DSN: config.NewSecret(dsn)}}
	var libs [2]*media.Library
	var dirs [2]string
	for i := range libs {
		db, err := openDB(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		key, err := db.InstallationKey(ctx, "media-url", 32)
		if err != nil {
			t.Fatal(err)
		}
		dirs[i] = t.TempDir()
		libs[i], err = media.New(media.Options{Dir: dirs[i], Key: key, PublicURL: "https://gw.example.com",
			Index: mediaIndex{db}, Blobs: mediaBlobsFor(cfg, db)})
		if err != nil {
			t.Fatal(err)
		}
	}
	content := bytes.Repeat([]byte("%PDF-1.4 a page of an invoice\n"), 80000) // about 2.4 MB: three chunks
	rec, err := libs[0].Put(ctx, media.PutMeta{Filename: "invoice.pdf", ContentType: "application/pdf"}, bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dirs[0]); len(entries) != 1 || entries[0].Name() != "tmp" {
		t.Errorf("media.dir holds %v, want only tmp: the content belongs in the store", entries)
	}
	u, err := url.Parse(libs[0].URL(rec))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(libs[1])
	defer srv.Close()
	resp, err := http.Get(srv.URL + u.RequestURI())
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, content) {
		t.Fatalf("GET on the other instance: %s, %d bytes (%v); want 200 and %d bytes", resp.Status, len(got), err, len(content))
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+u.RequestURI(), nil)
	req.Header.Set("Range", "bytes=1048570-1048580")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, content[1048570:1048581]) {
		t.Errorf("range across a chunk boundary: %s %q", resp.Status, got)
	}

	res, err := libs[1].Sweep(ctx, time.Now().Add(time.Hour))
	if err != nil || res.Records != 1 || res.Files != 1 || res.Bytes != int64(len(content)) {
		t.Fatalf("Sweep = %+v, %v", res, err)
	}
	resp, err = http.Get(srv.URL + u.RequestURI())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET after the sweep: %s, want 404", resp.Status)
	}
}
