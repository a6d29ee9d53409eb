package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/secrets"
)

// The deployment examples in deploy/ stay true to the code: the NATS
// server configuration gives each gateway user exactly the permissions an
// embedded server gives it and has what a site checks for (site tag,
// unique tag, fsync on every commit, TLS on routes), and the gateway's
// config file is one `serve --config` takes.
func TestDeployExamplesMatchTheCode(t *testing.T) {
	m, err := conf.ParseFile(filepath.Join("..", "..", "deploy", "nats", "nats-a.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if tags, _ := m["server_tags"].([]any); !slices.Equal(tags, []any{"site:a"}) {
		t.Errorf("server_tags %v", m["server_tags"])
	}
	js, _ := m["jetstream"].(map[string]any)
	if js["unique_tag"] != "site:" || js["sync_interval"] != "always" {
		t.Errorf("jetstream block %v", js)
	}
	cluster, _ := m["cluster"].(map[string]any)
	if tls, _ := cluster["tls"].(map[string]any); tls["verify"] != true {
		t.Errorf("routes without verified TLS: %v", cluster["tls"])
	}
	auth, _ := m["authorization"].(map[string]any)
	users, _ := auth["users"].([]any)
	gateways := 0
	for _, u := range users {
		user := u.(map[string]any)
		name := user["user"].(string)
		if !strings.HasPrefix(name, "gateway-") {
			if user["permissions"] != nil {
				t.Errorf("%v is limited", name)
			}
			continue
		}
		gateways++
		site, _ := secrets.GatewaySite(name)
		pub, sub := jsstore.GatewayPermissions(site, examplePartitions)
		perms, _ := user["permissions"].(map[string]any)
		if got := strs(perms["publish"]); !slices.Equal(got, pub) {
			t.Errorf("%v may publish %v, embedded servers allow %v", name, got, pub)
		}
		if got := strs(perms["subscribe"]); !slices.Equal(got, sub) {
			t.Errorf("%v may subscribe %v, embedded servers allow %v", name, got, sub)
		}
		if perms["allow_responses"] != true {
			t.Errorf("%v may not answer requests (allow_responses: true), as embedded servers allow", name)
		}
	}
	if gateways != 3 {
		t.Errorf("%d gateway users, want one per site", gateways)
	}

	// The gateway's config file, with a real site file in place of the
	// path it names.
	dir := t.TempDir()
	sec := filepath.Join(dir, "secrets")
	if err := secrets.Generate(sec, secrets.Options{Sites: []string{"a", "b", "c"}, BcryptCost: 4}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "systemd", "salamander-gateway.json"))
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]any
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	file["secrets"] = secrets.SiteFile(sec, "a")
	b, _ = json.Marshal(file)
	path := filepath.Join(dir, "gateway.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parseServeFlags([]string{"--config", path})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := c.siteConfig()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.NATSURLs) != 3 || len(cfg.Sites) != 3 || len(cfg.AllowedOrigins) != 1 || cfg.Partitions != examplePartitions {
		t.Fatalf("site config from the example: %+v", cfg)
	}
}

// examplePartitions is the partition count of the deployment examples (the
// default of serve --partitions): the gateways' permissions name the
// streams of as many.
const examplePartitions = 6

// strs reads a config list of strings.
func strs(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// The README's authorization block, which operators copy for their own
// NATS servers, gives gateway-a exactly what an embedded server gives it.
func TestReadmeAuthorizationMatchesTheCode(t *testing.T) {
	block := readmeCode(t, "```\nauthorization {\n")
	m, err := conf.Parse("authorization {\n" + block)
	if err != nil {
		t.Fatal(err)
	}
	users, _ := m["authorization"].(map[string]any)["users"].([]any)
	if len(users) != 1 {
		t.Fatalf("%d users in the README's block, want gateway-a", len(users))
	}
	user, _ := users[0].(map[string]any)
	perms, _ := user["permissions"].(map[string]any)
	pub, sub := jsstore.GatewayPermissions("a", examplePartitions)
	if got := strs(perms["publish"]); user["user"] != "gateway-a" || !slices.Equal(got, pub) {
		t.Errorf("%v may publish %v, embedded servers allow %v", user["user"], got, pub)
	}
	if got := strs(perms["subscribe"]); !slices.Equal(got, sub) {
		t.Errorf("%v may subscribe %v, embedded servers allow %v", user["user"], got, sub)
	}
	if perms["allow_responses"] != true {
		t.Error("the README's gateway may not answer requests (allow_responses: true)")
	}
}

// The permissions of gateway-a in the version before the narrowed ones
// (README at 1792dd2), which an upgrade in external mode starts from.
var (
	earlierPublish = []string{"sal.>", "$KV.SAL_CLUSTER.>", "$JS.API.INFO", "$JS.API.STREAM.NAMES",
		"$JS.API.STREAM.LIST", "$JS.API.STREAM.INFO.*", "$JS.API.STREAM.CREATE.*",
		"$JS.API.STREAM.LEADER.STEPDOWN.*", "$JS.API.DIRECT.GET.>", "$JS.API.STREAM.MSG.GET.*"}
	earlierSubscribe = []string{"_INBOX.gateway-a.>", "salc.>", "sal.eph.typing", "sal.eph.presence",
		"sal.eph.presence.v2", "sal.eph.presence.v2.sync.*", "sal.eph.hb.*", "sal.eph.gather.a"}
)

// The README's upgrade from an earlier version in external mode has the
// operator widen the gateways' subscriptions before the first gateway is
// upgraded, while gateways of both versions run: its list must hold every
// subscription of either (one missing, an upgraded gateway's presence
// subscription was refused and its users looked offline everywhere; an
// earlier one lost its resyncs), and the earlier publish rights it keeps
// must cover everything this version publishes.
func TestReadmeUpgradeServesBothVersions(t *testing.T) {
	block := readmeCode(t, "**Upgrading from an earlier version.**", "```\n")
	m, err := conf.Parse(block)
	if err != nil {
		t.Fatal(err)
	}
	got := strs(m["subscribe"])
	pub, sub := jsstore.GatewayPermissions("a", examplePartitions)
	want := slices.Clone(earlierSubscribe)
	for _, s := range sub {
		if !slices.Contains(want, s) {
			want = append(want, s)
		}
	}
	for _, s := range want {
		if !slices.Contains(got, s) {
			t.Errorf("the upgrade's subscribe list lacks %q", s)
		}
	}
	for _, s := range got {
		if !slices.Contains(want, s) {
			t.Errorf("the upgrade's subscribe list has %q, which neither version subscribes to", s)
		}
	}
	for _, s := range pub {
		if !slices.ContainsFunc(earlierPublish, func(f string) bool { return server.SubjectMatchesFilter(s, f) }) {
			t.Errorf("this version publishes %q, which the earlier permissions kept until the upgrade's end do not allow", s)
		}
	}
}

// readmeCode is README.md's text after the markers, found one after the
// other, up to the end of its code block.
func readmeCode(t *testing.T, markers ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, m := range markers {
		var ok bool
		if _, text, ok = strings.Cut(text, m); !ok {
			t.Fatalf("README.md has no %q where expected", m)
		}
	}
	text, _, ok := strings.Cut(text, "```")
	if !ok {
		t.Fatal("README.md: a code block without its end")
	}
	return text
}
