// Package ui holds the assets of spearlet's web dashboard (served at /ui
// by package agent): one HTML page, its script and its style sheet,
// embedded in the binary. They are plain files, written by hand: no
// framework, no build step, nothing fetched from elsewhere. The page reads
// the agent's state from the same origin only (/ui/events, and
// /v1/instances/{id}/logs?follow=true for the log pane), so whatever
// authenticates the API's requests covers it too.
package ui

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// Assets returns the dashboard's files: index.html, app.js, style.css.
func Assets() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded directory exists
	}
	return sub
}
