package inbound

import (
	"testing"
)

func TestDecodePost(t *testing.T) {
	for _, c := range []struct {
		name string
		in   string
		want postItem
		bad  bool
	}{
		{name: "text", in: "tHello <you>\n\"quoted\"", want: postItem{Text: "Hello <you>\n\"quoted\""}},
		{name: "media", in: "mMDc3ZjU", want: postItem{MediaID: "MDc3ZjU"}},
		{name: "recorded as JSON: text", in: `{"text":"Hello \u003cyou\u003e\n"}`, want: postItem{Text: "Hello <you>\n"}},
		{name: "recorded as JSON: media", in: `{"media":"MDc3ZjU"}`, want: postItem{MediaID: "MDc3ZjU"}},
		{name: "empty", in: "", bad: true},
		{name: "unknown kind", in: "xHello", bad: true},
		{name: "corrupt JSON", in: `{"text":`, bad: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := decodePost([]byte(c.in))
			if (err != nil) != c.bad || got != c.want {
				t.Errorf("decodePost(%q) = %+v, %v; want %+v (error %v)", c.in, got, err, c.want, c.bad)
			}
		})
	}
}

func FuzzDecodePost(f *testing.F) {
	f.Add([]byte("tHello"))
	f.Add([]byte("mMDc3ZjU"))
	f.Add([]byte(`{"text":"Hello"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		it, err := decodePost(b)
		if err != nil {
			return
		}
		if it.MediaID != "" && it.Text != "" {
			return // a JSON object may hold both; encode keeps the media
		}
		again, err := decodePost(it.encode())
		if err != nil || again != it {
			t.Fatalf("round trip of %+v: %+v, %v", it, again, err)
		}
	})
}
