"""The `vqa:` judge: yes/no questions about the image, answered by a vision-language model (being written)."""
