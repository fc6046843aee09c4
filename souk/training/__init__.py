"""Training: learn ranking stages from judged queries (`souk fit`) and from clicks."""
