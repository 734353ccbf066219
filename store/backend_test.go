package store

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"

	"mailgate/internal/pgtest"
)

// The store's tests run against both backends: forEachBackend runs a test
// as the subtests "sqlite" and "postgres", and openTest opens a fresh
// database of the backend its test runs under. One PostgreSQL server
// serves the whole test binary (started on first use, stopped by
// TestMain); every test gets a database of its own on it.

// pgServer is the test binary's PostgreSQL server.
var pgServer pgtest.Once

func TestMain(m *testing.M) {
	code := m.Run()
	pgServer.Stop()
	os.Exit(code)
}

// postgresServer returns the test binary's PostgreSQL server, starting it
// on first use (durable when a benchmark starts it; see pgtest.Once).
func postgresServer(t testing.TB) *pgtest.Server {
	t.Helper()
	return pgServer.Server(t)
}

// forEachBackend runs f as the subtests "sqlite" and "postgres".
func forEachBackend(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	t.Run(DriverSQLite, f)
	t.Run(DriverPostgres, f)
}

// forEachBackendB is forEachBackend for a benchmark.
func forEachBackendB(b *testing.B, f func(b *testing.B)) {
	b.Helper()
	b.Run(DriverSQLite, f)
	b.Run(DriverPostgres, f)
}

// onPostgres reports whether t runs under forEachBackend's "postgres"
// subtest (or a subtest of it).
func onPostgres(t testing.TB) bool {
	return strings.Contains(t.Name()+"/", "/"+DriverPostgres+"/")
}

// testDSNs maps the databases openPostgresTest opened to their DSNs, for
// reopenPostgres.
var testDSNs sync.Map // *DB -> string

// openPostgresTest opens a fresh PostgreSQL database for t.
func openPostgresTest(t testing.TB, opts Options) *DB {
	t.Helper()
	dsn := postgresServer(t).NewDatabase(t)
	db, err := OpenPostgres(context.Background(), dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	testDSNs.Store(db, dsn)
	t.Cleanup(func() { db.Close() })
	return db
}

// reopenPostgres closes db, a database of openPostgresTest, and opens it
// again as a new process would: with a claim key of its own.
func reopenPostgres(t testing.TB, db *DB, opts Options) *DB {
	t.Helper()
	dsn, ok := testDSNs.Load(db)
	if !ok {
		t.Fatal("reopenPostgres: not a database of openPostgresTest")
	}
	db.Close()
	again, err := OpenPostgres(context.Background(), dsn.(string), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { again.Close() })
	return again
}
