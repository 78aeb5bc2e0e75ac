"""The four models of the book, one file each: transformer, bert, gpt, llama."""
