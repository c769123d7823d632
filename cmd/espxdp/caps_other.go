//go:build !linux

package main

func missingCapabilities(netns bool) []string { return nil }

func capabilityHint(netns bool) string { return "" }
