module github.com/Kong/ai-deck-converter

go 1.22
