// Package apidoc embeds the OpenAPI description of Switchboard's HTTP API.
package apidoc

import _ "embed"

// OpenAPI is api/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
