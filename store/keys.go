package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
)

// InstallationKey returns the secret called name, creating it from
// crypto/rand with size bytes on first use. Creation is atomic: concurrent
// callers (and processes) all get the same key. Asking for an existing key
// with a different size is an error. The key never appears in errors.
func (db *DB) InstallationKey(ctx context.Context, name string, size int) ([]byte, error) {
	if name == "" || size <= 0 {
		return nil, fmt.Errorf("store: installation key %q: need a name and a positive size", name)
	}
	// Insert a fresh key unless one exists, then read whichever won: the
	// first writer's key, also when several processes (or instances on one
	// PostgreSQL) race for it.
	fresh := make([]byte, size)
	if _, err := rand.Read(fresh); err != nil {
		return nil, fmt.Errorf("store: installation key %q: %w", name, err)
	}
	var key []byte
	err := db.tx(ctx, func(tx *sql.Tx) error {
		if _, err := db.txExecOnce(ctx, tx, `INSERT INTO installation_keys (name, value, created_at) VALUES (?, ?, ?)
			ON CONFLICT (name) DO NOTHING`, name, fresh, db.nowMS()); err != nil {
			return err
		}
		return db.txQueryRowOnce(ctx, tx, `SELECT value FROM installation_keys WHERE name = ?`, name).Scan(&key)
	})
	if err != nil {
		return nil, fmt.Errorf("store: installation key %q: %w", name, err)
	}
	if len(key) != size {
		return nil, fmt.Errorf("store: installation key %q: stored key has %d bytes, want %d", name, len(key), size)
	}
	return key, nil
}
