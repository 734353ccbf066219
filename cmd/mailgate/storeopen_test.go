package main

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"mailgate/config"
	"mailgate/internal/pgtest"
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
