package userlike

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"mailgate/mailaddr"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file\n got: %s\nwant: %s", name, got, want)
	}
}

func TestInboundMessageMarshal(t *testing.T) {
	tests := []struct {
		name string
		msg  InboundMessage
	}{
		{"text", InboundMessage{Email: "jane@example.com", Name: "Jane Doe", Text: "Hello, my order 1234 has not arrived."}},
		{"media", InboundMessage{Email: "jane@example.com", Name: "Jane Doe", URL: "https://gw.example.com/media/2b9f/invoice.pdf?exp=1767225600&sig=q1w2e3"}},
		{"no-name", InboundMessage{Email: "jane@example.com", Text: "Line one\nLine two <b>not html</b> & \"quoted\""}},
		{"unicode", InboundMessage{Email: "jörg@example.de", Name: "Jörg Müller", Text: "Grüße aus Köln 👋"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.msg.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "inbound-"+tt.name+".json", append(got, '\n'))
			var back InboundMessage
			if err := json.Unmarshal(got, &back); err != nil || back != tt.msg {
				t.Errorf("round trip: got %+v, %v; want %+v", back, err, tt.msg)
			}
		})
	}
}

func TestInboundMessageMarshalInvalid(t *testing.T) {
	tests := []struct {
		name string
		msg  InboundMessage
		want string
	}{
		{"no email", InboundMessage{Text: "hi"}, "email is required"},
		{"blank email", InboundMessage{Email: "  ", Text: "hi"}, "email is required"},
		{"upper-case email", InboundMessage{Email: "Jane@example.com", Text: "hi"}, "not lower-case"},
		{"neither", InboundMessage{Email: "jane@example.com", Name: "Jane"}, "neither text nor url"},
		{"both", InboundMessage{Email: "jane@example.com", Text: "hi", URL: "https://x.example/a"}, "both text and url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.msg.Marshal()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Marshal() = %s, %v; want error containing %q", b, err, tt.want)
			}
		})
	}
}

// goldenNow is the fixed clock of the outbound golden files.
var goldenNow = time.Date(2025, 3, 1, 10, 4, 5, 0, time.UTC)

func TestDecodeOutboundGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "outbound-*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) < 10 {
		t.Fatalf("only %d outbound payloads in testdata", len(inputs))
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".json")
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			type result struct {
				Outbound  *Outbound `json:",omitempty"`
				IsMessage bool      `json:",omitempty"`
				DedupeKey string    `json:",omitempty"`
				Error     string    `json:",omitempty"`
			}
			var r result
			o, err := DecodeOutbound(body)
			if err != nil {
				r.Error = err.Error()
			} else {
				r = result{Outbound: o, IsMessage: o.IsMessage(), DedupeKey: o.DedupeKey(goldenNow)}
			}
			got, err := json.MarshalIndent(r, "", "\t")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, name+".golden", append(got, '\n'))
		})
	}
}

// TestDecodeOutbound states the important expectations in code, so that a
// careless -update cannot bless a regression.
func TestDecodeOutbound(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    Outbound
		wantErr error // nil: no error; errAny: any error
	}{
		{
			name: "flat",
			body: `{"email":"Jane@Example.com","text":"Hi","operator_name":"Max","id":"m-1","event":"message"}`,
			want: Outbound{Contact: "jane@example.com", Text: "Hi", Operator: "Max", ID: "m-1", Event: "message"},
		},
		{
			name: "nested message and contact",
			body: `{"message":{"id":"x","text":"Hi","event":"message","operator":{"name":"Erika"}},"contact":{"email":"jane@example.com"}}`,
			want: Outbound{Contact: "jane@example.com", Text: "Hi", Operator: "Erika", ID: "x", Event: "message"},
		},
		{
			name: "numeric id",
			body: `{"id":12345,"contact_identifier":"jane@example.com","body":"Hi"}`,
			want: Outbound{Contact: "jane@example.com", Text: "Hi", ID: "12345"},
		},
		{
			name: "large numeric id keeps its digits",
			body: `{"message_id":12345678901234567890,"email":"jane@example.com","text":"Hi"}`,
			want: Outbound{Contact: "jane@example.com", Text: "Hi", ID: "12345678901234567890"},
		},
		{
			name: "no id",
			body: `{"email":"jane@example.com","text":"Hi"}`,
			want: Outbound{Contact: "jane@example.com", Text: "Hi", IDFromHash: true},
		},
		{
			name: "deleted true",
			body: `{"message":{"id":"d","is_deleted":true,"text":"x"},"contact":{"identifier":"jane@example.com"}}`,
			want: Outbound{Contact: "jane@example.com", Text: "x", ID: "d", Deleted: true},
		},
		{
			name: "deleted string",
			body: `{"email":"jane@example.com","id":"d","text":"x","is_deleted":"TRUE"}`,
			want: Outbound{Contact: "jane@example.com", Text: "x", ID: "d", Deleted: true},
		},
		{
			name: "deleted number",
			body: `{"email":"jane@example.com","id":"d","text":"x","message":{"is_deleted":1}}`,
			want: Outbound{Contact: "jane@example.com", Text: "x", ID: "d", Deleted: true},
		},
		{
			name: "flat deleted false beats nested true",
			body: `{"email":"jane@example.com","id":"d","text":"x","is_deleted":false,"message":{"is_deleted":true}}`,
			want: Outbound{Contact: "jane@example.com", Text: "x", ID: "d"},
		},
		{
			name: "deleted other values are false",
			body: `{"email":"jane@example.com","id":"d","text":"x","is_deleted":"no"}`,
			want: Outbound{Contact: "jane@example.com", Text: "x", ID: "d"},
		},
		{
			name: "event only",
			body: `{"event":"conversation_closed"}`,
			want: Outbound{Event: "conversation_closed", IDFromHash: true},
		},
		{
			name: "media",
			body: `{"message":{"media":{"url":"https://f.example/a.png"},"uuid":"u"},"email":"jane@example.com","sender":{"name":"Erika"}}`,
			want: Outbound{Contact: "jane@example.com", MediaURL: "https://f.example/a.png", Operator: "Erika", ID: "u"},
		},
		{
			name: "empty values fall through to later keys",
			body: `{"email":"","contact":{"email":"b@example.com"},"text":"","body":"from body","id":"","uuid":"u"}`,
			want: Outbound{Contact: "b@example.com", Text: "from body", ID: "u"},
		},
		{
			name:    "missing contact",
			body:    `{"text":"Hi","id":"m"}`,
			wantErr: ErrNoContact,
		},
		{
			name:    "media without contact",
			body:    `{"url":"https://f.example/a.png"}`,
			wantErr: ErrNoContact,
		},
		{name: "array", body: `[]`, wantErr: errAny},
		{name: "null", body: `null`, wantErr: errAny},
		{name: "number", body: `12`, wantErr: errAny},
		{name: "empty body", body: ``, wantErr: errAny},
		{name: "malformed", body: `{"email":`, wantErr: errAny},
		{name: "trailing data", body: `{"email":"a@b.example","text":"x"}x`, wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeOutbound([]byte(tt.body))
			switch {
			case tt.wantErr == errAny:
				if err == nil {
					t.Fatalf("DecodeOutbound() = %+v, want an error", got)
				}
				return
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("DecodeOutbound() error = %v, want %v", err, tt.wantErr)
				}
				return
			case err != nil:
				t.Fatalf("DecodeOutbound() error = %v", err)
			}
			if *got != tt.want {
				t.Errorf("DecodeOutbound() =\n %+v\nwant\n %+v", *got, tt.want)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestOutboundIsMessage(t *testing.T) {
	for _, tt := range []struct {
		o    Outbound
		want bool
	}{
		{Outbound{Text: "x"}, true},
		{Outbound{MediaURL: "https://x.example/a"}, true},
		{Outbound{Event: "typing", Deleted: true}, false},
	} {
		if got := tt.o.IsMessage(); got != tt.want {
			t.Errorf("%+v.IsMessage() = %v, want %v", tt.o, got, tt.want)
		}
	}
}

func TestDedupeKey(t *testing.T) {
	withID := Outbound{Contact: "jane@example.com", Text: "Hi", ID: "m-1"}
	if got := withID.DedupeKey(goldenNow); got != "id:m-1" {
		t.Errorf("DedupeKey with id = %q, want id:m-1", got)
	}

	o := Outbound{Contact: "jane@example.com", Text: "Hi", IDFromHash: true}
	bucketStart := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	key := o.DedupeKey(bucketStart)
	if !strings.HasPrefix(key, "hash:") || len(key) != len("hash:")+64 {
		t.Fatalf("DedupeKey without id = %q, want hash: and 64 hex digits", key)
	}
	if got := o.DedupeKey(bucketStart.Add(9*time.Minute + 59*time.Second)); got != key {
		t.Errorf("same bucket gave %q, want %q", got, key)
	}
	if got := o.DedupeKey(bucketStart.In(time.FixedZone("CET", 3600))); got != key {
		t.Errorf("time zone changed the key: %q, want %q", got, key)
	}
	if got := o.DedupeKey(bucketStart.Add(10 * time.Minute)); got == key {
		t.Errorf("next bucket gave the same key %q", got)
	}
	if got := o.DedupeKey(bucketStart.Add(-time.Second)); got == key {
		t.Errorf("previous bucket gave the same key %q", got)
	}
	variants := []Outbound{
		{Contact: "john@example.com", Text: "Hi"},
		{Contact: "jane@example.com", Text: "Hi!"},
		{Contact: "jane@example.com", Text: "Hi", MediaURL: "https://x.example/a"},
		// Field boundaries matter: the same concatenation, split differently.
		{Contact: "jane@example.comHi", Text: ""},
	}
	for _, v := range variants {
		if got := v.DedupeKey(bucketStart); got == key {
			t.Errorf("%+v has the same key as %+v", v, o)
		}
	}
	// Before 1970 buckets still floor rather than straddle zero.
	pre := time.Unix(-1, 0)
	if a, b := o.DedupeKey(pre), o.DedupeKey(time.Unix(1, 0)); a == b {
		t.Errorf("keys either side of the epoch are equal: %q", a)
	}
}

func TestRedactPayload(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{
			name: "flat",
			in:   `{"email":"jane@example.com","api_security_token":"s3cr3t","text":"hi"}`,
			want: `{"email":"jane@example.com","text":"hi"}`,
		},
		{
			name: "nested and case-insensitive, order and numbers kept",
			in:   `{"b":1.50,"a":{"Secret":"x","API_KEY":"y","keep":[{"Authorization":"Bearer z","n":1e3}]},"Password":"p","tokens":["t"],"z":null,"t":true}`,
			want: `{"b":1.50,"a":{"keep":[{"n":1e3}]},"z":null,"t":true}`,
		},
		{
			name: "values that look secret but keys that do not are kept",
			in:   `{"text":"my token is abc"}`,
			want: `{"text":"my token is abc"}`,
		},
		{
			name: "whitespace compacted, html not escaped",
			in:   "{ \"url\" : \"https://x.example/?a=1&b=<2>\" ,\n \"arr\": [ 1 , 2 ] }",
			want: `{"url":"https://x.example/?a=1&b=<2>","arr":[1,2]}`,
		},
		{name: "not an object", in: `["a",{"token":"x"}]`, want: `["a",{}]`},
		{name: "malformed", in: `{"token":"abc"`, want: `<unparsable payload of 14 bytes withheld>`},
		{name: "trailing", in: `{} {"token":"abc"}`, want: `<unparsable payload of 18 bytes withheld>`},
		{name: "empty", in: ``, want: `<unparsable payload of 0 bytes withheld>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(RedactPayload([]byte(tt.in))); got != tt.want {
				t.Errorf("RedactPayload(%s) =\n %s\nwant\n %s", tt.in, got, tt.want)
			}
		})
	}
}

func addOutboundSeeds(f *testing.F) {
	inputs, _ := filepath.Glob(filepath.Join("testdata", "outbound-*.json"))
	for _, in := range inputs {
		b, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"message":{"message":{"message":{}}}}`))
	f.Add([]byte(`{"email":"\u00c4@example.com","url":"x","is_deleted":1e0}`))
	f.Add([]byte(`{"email":"\u212Aate@example.com","text":"hi"}`))
}

func FuzzDecodeOutbound(f *testing.F) {
	addOutboundSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		o, err := DecodeOutbound(body)
		if err != nil {
			if o != nil {
				t.Fatalf("error %v with non-nil result %+v", err, o)
			}
			return
		}
		if o.IsMessage() && o.Contact == "" {
			t.Fatalf("message without contact: %+v", o)
		}
		if o.Contact != mailaddr.LowerASCII(o.Contact) {
			t.Fatalf("contact %q is not ASCII-lower-case", o.Contact)
		}
		if o.IDFromHash != (o.ID == "") {
			t.Fatalf("IDFromHash %v with ID %q", o.IDFromHash, o.ID)
		}
		_ = o.DedupeKey(goldenNow)
	})
}

func FuzzRedactPayload(f *testing.F) {
	addOutboundSeeds(f)
	f.Add([]byte(`{"token":"x","a":{"SECRET":1}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		out := RedactPayload(body)
		if !json.Valid(body) {
			return
		}
		// Decode numbers as json.Number: a valid JSON number may overflow
		// float64, and RedactPayload keeps number spelling.
		dec := json.NewDecoder(bytes.NewReader(out))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("RedactPayload(%q) = %q: not JSON: %v", body, out, err)
		}
		if !json.Valid(out) {
			t.Fatalf("RedactPayload(%q) = %q: not valid JSON", body, out)
		}
		var walk func(any)
		walk = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				for k, e := range v {
					if isSensitiveKey(k) {
						t.Fatalf("RedactPayload(%q) kept key %q", body, k)
					}
					walk(e)
				}
			case []any:
				for _, e := range v {
					walk(e)
				}
			}
		}
		walk(v)
	})
}

func BenchmarkDecodeOutbound(b *testing.B) {
	body, err := os.ReadFile(filepath.Join("testdata", "outbound-unknown-fields.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := DecodeOutbound(body); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDecodeOutboundKeepsNonASCIILocalPart: a contact whose local part is
// not ASCII is never folded into another address (U+212A KELVIN SIGN would
// become "k" under Unicode lower-casing, U+0130 would become "i").
func TestDecodeOutboundKeepsNonASCIILocalPart(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"\u212Aate@Example.com", "\u212Aate@example.com"},
		{"\u0130rem@example.com", "\u0130rem@example.com"},
		{"Kate@Example.com", "kate@example.com"},
	} {
		o, err := DecodeOutbound([]byte(`{"email":"` + tt.in + `","text":"hi","id":"1"}`))
		if err != nil {
			t.Fatalf("%s: %v", tt.in, err)
		}
		if o.Contact != tt.want {
			t.Errorf("contact of %s = %q, want %q", tt.in, o.Contact, tt.want)
		}
		if _, err := (InboundMessage{Email: o.Contact, Text: "hi"}).Marshal(); err != nil {
			t.Errorf("marshal inbound for %q: %v", o.Contact, err)
		}
	}
}

// TestRedactPayloadDeepNesting: a 1 MiB body of '[' (or of nested objects)
// is withheld without recursing a million levels deep. It cost about
// 0.5 GB before RedactPayload validated first.
func TestRedactPayloadDeepNesting(t *testing.T) {
	for _, body := range [][]byte{
		bytes.Repeat([]byte("["), 1<<20),
		append(bytes.Repeat([]byte("["), 10000), bytes.Repeat([]byte("]"), 10000)...),
		[]byte(strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000)),
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		out := RedactPayload(body)
		runtime.ReadMemStats(&after)
		if !bytes.HasPrefix(out, []byte("<unparsable payload")) {
			t.Errorf("%d-byte nested body: got %.40q, want it withheld", len(body), out)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
			t.Errorf("%d-byte nested body: allocated %d MiB, want under 64 MiB", len(body), alloc>>20)
		}
		// Deep recursion grows the goroutine stack, which TotalAlloc does
		// not count.
		if stack := int64(after.StackSys) - int64(before.StackSys); stack > 64<<20 {
			t.Errorf("%d-byte nested body: stack grew by %d MiB, want under 64 MiB", len(body), stack>>20)
		}
	}
	if got := string(RedactPayload([]byte(`[[[{"token":"x","a":1}]]]`))); got != `[[[{"a":1}]]]` {
		t.Errorf("shallow nesting: %s", got)
	}
}
