package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// FuzzServeConfig writes the input as serve's --config file. Whatever the
// file holds, parsing never panics; a file it accepts is exactly one JSON
// object (or null) with no key serve does not know, so that a misspelt or
// stray setting is an error, never silently ignored; flags given on the
// command line win over the file; and a configuration siteConfig accepts
// is within its documented bounds.
func FuzzServeConfig(f *testing.F) {
	path := filepath.Join(f.TempDir(), "serve.json")
	known := serveConfigKeys()
	f.Fuzz(func(t *testing.T, file []byte) {
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := parseServeFlags([]string{"--http", "127.0.0.1:9", "--config", path})
		if err != nil {
			return
		}
		if c.HTTP != "127.0.0.1:9" {
			t.Fatalf("file %q overrode --http: %q", file, c.HTTP)
		}
		dec := json.NewDecoder(bytes.NewReader(file))
		var top map[string]json.RawMessage
		if err := dec.Decode(&top); err != nil {
			t.Fatalf("file %q accepted but is not a JSON object: %v", file, err)
		}
		for k := range top {
			if !knownKey(known, k) {
				t.Fatalf("file %q accepted with unknown key %q", file, k)
			}
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			t.Fatalf("file %q accepted with data after its object (err %v)", file, err)
		}
		cfg, err := c.siteConfig()
		if err != nil {
			return
		}
		if cfg.Site == "" || cfg.Partitions < 1 || cfg.Partitions > 1024 ||
			cfg.BcryptCost < bcrypt.MinCost || cfg.BcryptCost > bcrypt.MaxCost ||
			cfg.NATS.SyncAlways != (c.Sync == "always") || c.Sync != "always" && c.Sync != "interval" {
			t.Fatalf("file %q: site config out of bounds: %+v", file, cfg)
		}
	})
}

// FuzzParseSites: every site --sites accepts has a name and an absolute
// http(s) URL that clients can fail over to, and the list formats back to
// a string that parses to the same list.
func FuzzParseSites(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		sites, err := parseSites(s)
		if err != nil {
			return
		}
		var items []string
		for _, site := range sites {
			if site.Name == "" || strings.ContainsAny(site.Name, ",=") || strings.Contains(site.URL, ",") {
				t.Fatalf("parseSites(%q): site %+v cannot be listed", s, site)
			}
			u, err := url.Parse(site.URL)
			if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
				t.Fatalf("parseSites(%q): site %s has URL %q, not an absolute http(s) URL (%v)", s, site.Name, site.URL, err)
			}
			items = append(items, site.Name+"="+site.URL)
		}
		again, err := parseSites(strings.Join(items, ","))
		if err != nil || !reflect.DeepEqual(again, sites) {
			t.Fatalf("parseSites(%q) = %+v, but its listing parses to %+v, %v", s, sites, again, err)
		}
	})
}

// serveConfigKeys lists the JSON names of serveConfig's fields.
func serveConfigKeys() []string {
	var keys []string
	rt := reflect.TypeOf(serveConfig{})
	for i := 0; i < rt.NumField(); i++ {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		if name == "" {
			name = rt.Field(i).Name
		}
		keys = append(keys, name)
	}
	return keys
}

// knownKey matches a key as encoding/json does: case-insensitively.
func knownKey(known []string, k string) bool {
	for _, name := range known {
		if strings.EqualFold(name, k) {
			return true
		}
	}
	return false
}
