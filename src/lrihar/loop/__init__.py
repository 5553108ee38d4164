"""Loops over the stages: :mod:`lrihar.loop.bootstrap` runs the detector correction loop
(suggest → a person corrects → train → export → re-annotate → held-out check) as one resumable
command, each step still the library function its own command calls."""
