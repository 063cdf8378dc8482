"""Small pieces every stage uses: errors, atomic output files, named options, spreadsheet-safe text."""
