// Package api holds Salamander's public API contract: the OpenAPI 3
// document that every site serves at /openapi.yaml and that the Go SDK
// (package client) implements.
package api

import _ "embed"

// OpenAPI is the OpenAPI 3 document of the HTTP and WebSocket API.
//
//go:embed openapi.yaml
var OpenAPI []byte
