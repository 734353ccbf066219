package store

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/internal/fakeclock"
)

func TestPgText(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`SELECT a FROM t WHERE b = ? AND c = ?`, `SELECT a FROM t WHERE b = $1 AND c = $2`},
		{`SELECT '?', 'it''s ?' FROM t WHERE x = ?`, `SELECT '?', 'it''s ?' FROM t WHERE x = $1`},
		{"SELECT id FROM inbound INDEXED BY inbound_contact\n\t\tWHERE channel = ?", "SELECT id FROM inbound\n\t\tWHERE channel = $1"},
		{`DELETE FROM m WHERE id IN (SELECT value FROM json_each(?)) AND s = ?`,
			`DELETE FROM m WHERE id IN (SELECT value FROM json_array_elements_text($1::json)) AND s = $2`},
		{`SELECT 1`, `SELECT 1`},
	} {
		if got := pgText(c.in); got != c.want {
			t.Errorf("pgText(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	d := &dialect{}
	if got := d.q("SELECT ?"); got != "SELECT ?" {
		t.Errorf("the SQLite dialect rewrote %q", got)
	}
}

func TestRedactDSN(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"host=/run/pg user=mg password=s3cret dbname=mg", "host=/run/pg user=mg password=xxxxx dbname=mg"},
		{"host=db password='s3 cret' dbname=mg", "host=db password=xxxxx dbname=mg"},
		{"host=db PASSWORD = s3cret", "host=db PASSWORD = xxxxx"},
		{"postgres://mg:s3cret@db:5432/mg?sslmode=require", "postgres://mg:xxxxx@db:5432/mg?sslmode=require"},
		{"postgresql://mg@db/mg?password=s3cret", "postgresql://mg@db/mg?password=xxxxx"},
		{"host=db user=mg", "host=db user=mg"},
	} {
		got := RedactDSN(c.in)
		if got != c.want {
			t.Errorf("RedactDSN(%q) = %q, want %q", c.in, got, c.want)
		}
		if strings.Contains(got, "s3") {
			t.Errorf("RedactDSN(%q) leaks the password: %q", c.in, got)
		}
	}
}

// TestOpenPostgresErrors checks that the password stays out of the errors
// of a DSN that cannot be parsed and of a server that cannot be reached.
func TestOpenPostgresErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range []struct{ dsn, want string }{
		{"postgres://mg:s3cret@db:notaport/mg", "cannot be parsed"},
		{"host=db port=notaport user=mg password=s3cret", "cannot be parsed"},
		{"host=" + filepath.Join(t.TempDir(), "nothing") + " user=mg password=s3cret dbname=mg sslmode=disable", "password=xxxxx"},
	} {
		db, err := OpenPostgres(ctx, c.dsn, Options{})
		if err == nil {
			db.Close()
			t.Fatalf("OpenPostgres(%q) succeeded", c.dsn)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error shows the password: %v", err)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("OpenPostgres(%q) = %v, want it to say %q", c.dsn, err, c.want)
		}
	}
}

// TestPostgresSchema checks that postgres_schema.sql has the tables,
// columns and indexes of schema.sql, that a database is created from it
// at the newest version, and that a database with foreign tables is
// refused.
func TestPostgresSchema(t *testing.T) {
	ctx := context.Background()
	lite, _ := openTest(t)
	pg := openPostgresTest(t, Options{})

	liteCols := map[string][]string{}
	rows, err := lite.read.QueryContext(ctx, `SELECT m.name, p.name FROM sqlite_master AS m, pragma_table_info(m.name) AS p
		WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'`)
	if err != nil {
		t.Fatal(err)
	}
	collect(t, rows, liteCols)
	pgCols := map[string][]string{}
	rows, err = pg.read.QueryContext(ctx, `SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name != 'mailgate_schema'`)
	if err != nil {
		t.Fatal(err)
	}
	collect(t, rows, pgCols)
	if !reflect.DeepEqual(liteCols, pgCols) {
		t.Errorf("tables and columns differ:\nsqlite   %v\npostgres %v", liteCols, pgCols)
	}

	liteIdx := map[string][]string{}
	rows, err = lite.read.QueryContext(ctx, `SELECT tbl_name, name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	collect(t, rows, liteIdx)
	pgIdx := map[string][]string{}
	rows, err = pg.read.QueryContext(ctx, `SELECT tablename, indexname FROM pg_indexes
		WHERE schemaname = current_schema() AND indexname NOT LIKE '%_pkey' AND indexname NOT LIKE '%_key'`)
	if err != nil {
		t.Fatal(err)
	}
	collect(t, rows, pgIdx)
	if !reflect.DeepEqual(liteIdx, pgIdx) {
		t.Errorf("indexes differ:\nsqlite   %v\npostgres %v", liteIdx, pgIdx)
	}

	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if v, err := pg.SchemaVersion(ctx); err != nil || v != len(ms) {
		t.Errorf("SchemaVersion = %d, %v; want %d", v, err, len(ms))
	}

	dsn := postgresServer(t).NewDatabase(t)
	other, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Exec(`CREATE TABLE customers (id BIGINT)`); err != nil {
		t.Fatal(err)
	}
	if db, err := OpenPostgres(ctx, dsn, Options{}); err == nil {
		db.Close()
		t.Error("OpenPostgres took a database with tables of another application")
	} else if !strings.Contains(err.Error(), "not a mailgate store") {
		t.Errorf("OpenPostgres on a foreign database: %v", err)
	}
}

// collect reads (table, name) rows into m, names sorted.
func collect(t *testing.T, rows *sql.Rows, m map[string][]string) {
	t.Helper()
	defer rows.Close()
	for rows.Next() {
		var table, name string
		if err := rows.Scan(&table, &name); err != nil {
			t.Fatal(err)
		}
		m[table] = append(m[table], name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, v := range m {
		sort.Strings(v)
	}
}

// openInstances opens n handles on one new PostgreSQL database
// concurrently, as n mailgate instances starting at once would; they share
// clk.
func openInstances(t *testing.T, n int, clk *fakeclock.Clock) []*DB {
	t.Helper()
	dsn := postgresServer(t).NewDatabase(t)
	dbs := make([]*DB, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dbs[i], errs[i] = OpenPostgres(context.Background(), dsn, Options{Now: clk.Now})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
		t.Cleanup(func() { dbs[i].Close() })
	}
	return dbs
}

// TestOutboxClaimAcrossInstances runs the outbox worker's claim (DueOutbox,
// then MarkOutboxSending) on two instances sharing one PostgreSQL database,
// concurrently: every reply is claimed exactly once, and each contact's
// replies leave together, in one batch.
func TestOutboxClaimAcrossInstances(t *testing.T) {
	clk := fakeclock.New(time.UnixMilli(1_700_000_000_000))
	dbs := openInstances(t, 2, clk)
	ctx := context.Background()
	const contacts, each = 40, 3
	want := map[int64]string{} // id -> contact
	for c := range contacts {
		contact := fmt.Sprintf("c%d@example.org", c)
		for i := range each {
			// Alternate the instances, as a load balancer would.
			it := &OutboxItem{Channel: "c", Contact: contact, UserlikeID: fmt.Sprint(c, "-", i), Text: "hi"}
			id, dup, err := dbs[(c+i)%2].Enqueue(ctx, it)
			if err != nil || dup {
				t.Fatalf("Enqueue = %v, %v", dup, err)
			}
			want[id] = contact
		}
	}

	type claim struct {
		instance int
		ids      []int64
	}
	var mu sync.Mutex
	var claims []claim
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, db := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; ; round++ {
				batches, err := db.DueOutbox(ctx, clk.Now())
				if err != nil {
					errs <- err
					return
				}
				if len(batches) == 0 {
					return
				}
				for _, b := range batches {
					moved, err := db.MarkOutboxSending(ctx, b.IDs(), fmt.Sprintf("m%d-%d@example.org", i, round))
					if err != nil {
						errs <- err
						return
					}
					if len(moved) > 0 {
						mu.Lock()
						claims = append(claims, claim{i, moved})
						mu.Unlock()
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	seen := map[int64]int{}
	byInstance := [2]int{}
	for _, c := range claims {
		byInstance[c.instance]++
		contact := want[c.ids[0]]
		for _, id := range c.ids {
			seen[id]++
			if want[id] != contact {
				t.Errorf("claim %v mixes contacts", c.ids)
			}
		}
		if len(c.ids) != each {
			t.Errorf("claim %v of %s: want all %d replies of the contact in one batch", c.ids, contact, each)
		}
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("reply #%d claimed %d times", id, seen[id])
		}
	}
	if len(claims) != contacts {
		t.Errorf("%d claims, want one per contact (%d)", len(claims), contacts)
	}
	t.Logf("claims per instance: %v", byInstance)
	counts, err := dbs[0].OutboxCounts(ctx, "c")
	if err != nil || counts[OutboxSending] != contacts*each || len(counts) != 1 {
		t.Errorf("OutboxCounts = %v, %v", counts, err)
	}
}

// TestCoalescingAcrossInstances queues replies to one contact through two
// instances at once: they get one send_after and leave as one batch.
func TestCoalescingAcrossInstances(t *testing.T) {
	clk := fakeclock.New(time.UnixMilli(1_700_000_000_000))
	dbs := openInstances(t, 2, clk)
	ctx := context.Background()
	const n = 10
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			it := &OutboxItem{Channel: "c", Contact: "ann@example.org", UserlikeID: fmt.Sprint(i), Text: "hi",
				SendAfter: clk.Now().Add(5 * time.Second)}
			if _, _, err := dbs[i%2].Enqueue(ctx, it); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if b, err := dbs[0].DueOutbox(ctx, clk.Now().Add(4*time.Second)); err != nil || len(b) != 0 {
		t.Fatalf("DueOutbox before the wait = %v, %v", b, err)
	}
	batches, err := dbs[1].DueOutbox(ctx, clk.Now().Add(5*time.Second))
	if err != nil || len(batches) != 1 || len(batches[0].Items) != n {
		t.Fatalf("DueOutbox = %d batches, %v; want one of %d items", len(batches), err, n)
	}
	var ids []int64
	for _, it := range batches[0].Items {
		if !it.SendAfter.Equal(batches[0].Items[0].SendAfter) {
			t.Errorf("#%d has send_after %v, #%d %v", it.ID, it.SendAfter, batches[0].Items[0].ID, batches[0].Items[0].SendAfter)
		}
		ids = append(ids, it.ID)
	}
	if !slices.IsSorted(ids) {
		t.Errorf("items not in id order: %v", ids)
	}
}

// TestInstallationKeyAcrossInstances has four instances ask for a new key
// at once: all get the same.
func TestInstallationKeyAcrossInstances(t *testing.T) {
	dbs := openInstances(t, 4, fakeclock.New(time.UnixMilli(1_700_000_000_000)))
	keys := make([][]byte, len(dbs))
	errs := make([]error, len(dbs))
	var wg sync.WaitGroup
	for i, db := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys[i], errs[i] = db.InstallationKey(context.Background(), "media-url", 32)
		}()
	}
	wg.Wait()
	for i := range dbs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if len(keys[i]) != 32 || !bytes.Equal(keys[i], keys[0]) {
			t.Errorf("instance %d got key %x, instance 0 %x", i, keys[i], keys[0])
		}
	}
}

// TestTextNotUTF8 records an email whose subject is not UTF-8 and whose
// text holds a NUL: SQLite keeps the bytes, PostgreSQL (whose TEXT cannot
// hold them) U+FFFD in their place; neither fails the ledger.
func TestTextNotUTF8(t *testing.T) { forEachBackend(t, testTextNotUTF8) }

func testTextNotUTF8(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	in := newInbound(1, "ann@example.org", 1)
	in.Subject = "Rechnung f\xfcr M\xe4rz"
	in.FullText = "before\x00after"
	res, err := db.RecordInbound(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := db.Inbound(ctx, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantSubject, wantText := in.Subject, in.FullText
	if db.Driver() == DriverPostgres {
		wantSubject, wantText = "Rechnung f\uFFFDr M\uFFFDrz", "before\uFFFDafter"
	}
	if got.Subject != wantSubject || got.FullText != wantText {
		t.Errorf("read back %q, %q; want %q, %q", got.Subject, got.FullText, wantSubject, wantText)
	}
}

var numberedParam = regexp.MustCompile(`\?[0-9]`)

// FuzzPgText checks the PostgreSQL rewrite of any query text: no "?"
// placeholder is left outside string literals, the placeholders are
// numbered from $1 in order, and the text outside them is kept.
func FuzzPgText(f *testing.F) {
	f.Add(`SELECT a FROM t WHERE b = ? AND c = 'x?''y' AND d IN (SELECT value FROM json_each(?))`)
	f.Add("SELECT id FROM inbound INDEXED BY inbound_state WHERE x = ?")
	f.Add(`'unterminated ?`)
	f.Fuzz(func(t *testing.T, q string) {
		if strings.Contains(q, "INDEXED BY") || strings.Contains(q, "json_each") || strings.Contains(q, "$") ||
			numberedParam.MatchString(q) {
			// Rewritten on purpose, ambiguous with the numbering, or
			// SQLite's ?NNN, which the store does not use.
			return
		}
		out := pgText(q)
		var back strings.Builder
		inString, n := false, 0
		for i := 0; i < len(out); i++ {
			c := out[i]
			switch {
			case c == '\'':
				inString = !inString
			case c == '?' && !inString:
				t.Fatalf("pgText(%q) = %q: a ? is left", q, out)
			case c == '$' && !inString:
				j := i + 1
				for j < len(out) && out[j] >= '0' && out[j] <= '9' {
					j++
				}
				n++
				if out[i+1:j] != fmt.Sprint(n) {
					t.Fatalf("pgText(%q) = %q: placeholder %q, want $%d", q, out, out[i:j], n)
				}
				back.WriteByte('?')
				i = j - 1
				continue
			}
			back.WriteByte(c)
		}
		if back.String() != q {
			t.Fatalf("pgText(%q) = %q changes more than the placeholders", q, out)
		}
	})
}

// TestOutboxClaimSkipsLockedBatch has one instance hold the lock of a
// batch, as while it claims it: another instance's claim of the same batch
// returns at once with nothing, instead of waiting, and takes the whole
// batch once the lock is gone.
func TestOutboxClaimSkipsLockedBatch(t *testing.T) {
	clk := fakeclock.New(time.UnixMilli(1_700_000_000_000))
	dbs := openInstances(t, 2, clk)
	ctx := context.Background()
	var ids []int64
	for i := range 2 {
		id, _, err := dbs[0].Enqueue(ctx, &OutboxItem{Channel: "c", Contact: "ann@example.org", UserlikeID: fmt.Sprint(i), Text: "hi"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	tx, err := dbs[0].write.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`SELECT id FROM outbox WHERE id = $1 FOR UPDATE`, ids[0]); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	moved, err := dbs[1].MarkOutboxSending(wctx, ids, "m1@example.org")
	cancel()
	if err != nil || len(moved) != 0 {
		t.Fatalf("claim of a locked batch = %v, %v; want nothing, at once", moved, err)
	}
	tx.Rollback()
	moved, err = dbs[1].MarkOutboxSending(ctx, ids, "m1@example.org")
	if err != nil || !slices.Equal(moved, ids) {
		t.Fatalf("claim after the lock = %v, %v; want %v", moved, err, ids)
	}
}

// TestRequeueSendingAcrossInstances checks that an instance requeues only
// the items whose claimer is gone: while the instance sending a reply is
// alive, another instance's RequeueSending (at its start, or its periodic
// run) leaves the reply alone; once the sender's session ends, the reply
// is queued again.
func TestRequeueSendingAcrossInstances(t *testing.T) {
	clk := fakeclock.New(time.UnixMilli(1_700_000_000_000))
	dbs := openInstances(t, 2, clk)
	sender, other := dbs[0], dbs[1]
	ctx := context.Background()
	id, _, err := other.Enqueue(ctx, &OutboxItem{Channel: "c", Contact: "ann@example.org", UserlikeID: "1", Text: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if moved, err := sender.MarkOutboxSending(ctx, []int64{id}, "m1@example.org"); err != nil || len(moved) != 1 {
		t.Fatalf("MarkOutboxSending = %v, %v", moved, err)
	}
	state := func() string {
		t.Helper()
		var s string
		if err := other.read.QueryRowContext(ctx, `SELECT state FROM outbox WHERE id = $1`, id).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, db := range []*DB{other, sender} {
		if n, err := db.RequeueSending(ctx); err != nil || n != 0 {
			t.Fatalf("RequeueSending while the sender is alive = %d, %v; want 0", n, err)
		}
	}
	if s := state(); s != OutboxSending {
		t.Fatalf("state %q while the sender is alive, want sending", s)
	}
	// Its session, and with it its claim lock, ends: the server notices
	// the closed connection a moment after Close returns, so wait for it.
	sender.Close()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		n, err := other.RequeueSending(ctx)
		if err != nil || n > 1 {
			t.Fatalf("RequeueSending after the sender is gone = %d, %v; want 1", n, err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("RequeueSending still finds the claim held 30 s after the sender closed its store")
		}
	}
	if s := state(); s != OutboxQueued {
		t.Fatalf("state %q after the requeue, want queued", s)
	}
}
