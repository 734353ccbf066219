package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailgate/config"
	"mailgate/internal/pgtest"
	"mailgate/media"
	"mailgate/store"
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

// TestStoreMigrate copies an SQLite store with a ledger row, a reply and
// a media file into PostgreSQL with "mailgate store migrate", starts the
// PostgreSQL store as the daemon would and finds them there; a second run
// is refused.
func TestStoreMigrate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "state", "mailgate.db")
	mediaDir := filepath.Join(dir, "state", "media")
	// The server trusts local connections; the password shows that it
	// stays out of the output.
	dsn := pgtest.New(t).NewDatabase(t) + " password=pg-s3cret"
	cfgPath := filepath.Join(dir, "config.toml")
	cfgText := fmt.Sprintf(`
[server]
listen = "127.0.0.1:8080"
public_url = "https://gw.example.test"

[store]
path = %q
dsn = %q

[media]
dir = %q

[[channel]]
name = "support"

[channel.userlike]
inbound_url = "https://userlike.example.test/inbound"
inbound_token = "inbound-token-abc"
outbound_token = "outbound-token-xyz"

[channel.imap]
address = "127.0.0.1:1"
username = "support@example.test"
password = "imap-pass"

[channel.smtp]
address = "127.0.0.1:1"
username = "support@example.test"
password = "smtp-pass"
from = "Example Support <support@example.test>"

[channel.verify]
trusted_authserv_ids = ["mx.example.test"]
`, dbPath, dsn, mediaDir)
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCLI(t, "", "store", "migrate", "-to", "postgres", "-c", cfgPath); code == 0 || !strings.Contains(errOut, "no SQLite store") {
		t.Fatalf("migrate without an SQLite store: exit %d, %s", code, errOut)
	}

	lite, err := store.Open(ctx, dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := lite.InstallationKey(ctx, "media-url", 32)
	if err != nil {
		t.Fatal(err)
	}
	lib, err := media.New(media.Options{Dir: mediaDir, Key: key, PublicURL: "https://gw.example.com", Index: mediaIndex{lite}})
	if err != nil {
		t.Fatal(err)
	}
	content := []byte("a photo of the broken part")
	rec, err := lib.Put(ctx, media.PutMeta{Filename: "part.txt", ContentType: "text/plain"}, bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	res, err := lite.RecordInbound(ctx, &store.Inbound{Channel: "support", Folder: "INBOX", UIDValidity: 1, UID: 1,
		Contact: "ann@example.org", Posts: [][]byte{[]byte(`{"text":"hi"}`)}, MediaIDs: []string{rec.ID}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := lite.Enqueue(ctx, &store.OutboxItem{Channel: "support", Contact: "ann@example.org", UserlikeID: "u1", Text: "Hello Ann"}); err != nil {
		t.Fatal(err)
	}
	lite.Close()

	code, out, errOut := runCLI(t, "", "store", "migrate", "-to", "postgres", "-c", cfgPath)
	if code != 0 || !strings.Contains(out, "inbound 1, ") || !strings.Contains(out, "1 media files (0 missing)") {
		t.Fatalf("migrate: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if strings.Contains(out+errOut, "pg-s3cret") {
		t.Errorf("the output shows the DSN: %s %s", out, errOut)
	}

	cfg := &config.Config{Store: config.Store{Driver: config.StorePostgres, DSN: config.NewSecret(dsn)}}
	pg, err := openDB(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if in, err := pg.Inbound(ctx, res.ID); err != nil || in.Contact != "ann@example.org" {
		t.Errorf("inbound #%d on postgres: %+v, %v", res.ID, in, err)
	}
	if due, err := pg.DueOutbox(ctx, time.Now().Add(time.Hour)); err != nil || len(due) != 1 {
		t.Errorf("DueOutbox on postgres = %v, %v", due, err)
	}
	pgKey, err := pg.InstallationKey(ctx, "media-url", 32)
	if err != nil || !bytes.Equal(pgKey, key) {
		t.Fatalf("media-url key on postgres: %v", err)
	}
	pgLib, err := media.New(media.Options{Dir: t.TempDir(), Key: pgKey, PublicURL: "https://gw.example.com",
		Index: mediaIndex{pg}, Blobs: mediaBlobsFor(cfg, pg)})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(lib.URL(rec)) // a URL issued before the move
	w := httptest.NewRecorder()
	pgLib.ServeHTTP(w, httptest.NewRequest(http.MethodGet, u.RequestURI(), nil))
	if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), content) {
		t.Errorf("media URL after the move: %d %q", w.Code, w.Body.Bytes())
	}

	if code, _, errOut := runCLI(t, "", "store", "migrate", "-to", "postgres", "-c", cfgPath); code == 0 || !strings.Contains(errOut, "already copied") {
		t.Errorf("second migrate: exit %d, stderr %q", code, errOut)
	}

	// check-config -connect reaches the store it names (the mail servers
	// are not there: port 1 refuses).
	pgCfgPath := filepath.Join(dir, "pg.toml")
	if err := os.WriteFile(pgCfgPath, []byte(strings.Replace(cfgText, "[store]\n", "[store]\ndriver = \"postgres\"\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, out, errOut = runCLI(t, "", "check-config", "-connect", "-c", pgCfgPath)
	if !strings.Contains(out, "  ok      store: postgres: connect (") || !strings.Contains(out, "password=xxxxx") {
		t.Errorf("check-config -connect: stdout %q, stderr %q", out, errOut)
	}
	if strings.Contains(out+errOut, "pg-s3cret") {
		t.Errorf("check-config shows the DSN's password: %s %s", out, errOut)
	}
}
